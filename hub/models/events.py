"""The append-only audit log: every change to a golden record, who made it and why."""
from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from hub.models.types import BigId, UTCDateTime, utcnow


class Event(SQLModel, table=True):
    __tablename__ = "event"
    __table_args__ = (sa.Index("ix_event_customer_id_id", "customer_id", "id"),
                      # the data-quality dashboard counts outcomes per kind and day over a recent range
                      sa.Index("ix_event_kind_at", "kind", "at"))

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    customer_id: int | None = Field(default=None, sa_type=BigId)
    kind: str = Field(max_length=40)
    at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    actor: str = Field(max_length=200)
    note: str | None = Field(default=None)
    changes: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
