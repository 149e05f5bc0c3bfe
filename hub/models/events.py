"""The append-only audit log: every change to a golden record, who made it and why."""
from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from hub.models.types import BigId, SealedJSON, UTCDateTime, utcnow


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
    # attribute values (before/after) of the sealed attributes are sealed at rest (hub.privacy.sealing)
    changes: dict[str, Any] | None = Field(default=None, sa_type=SealedJSON("changes"))


class Outbox(SQLModel, table=True):
    """The way out of the audit log: one row per committed event, numbered in commit order.

    Written by the unit of work itself, just before it commits (`hub.db.seal_outbox`); pruned once every
    durable consumer has passed a row and the retention has elapsed (the `event` row stays: it is the audit).
    """

    __tablename__ = "outbox"

    position: int = Field(sa_type=sa.BigInteger, primary_key=True, sa_column_kwargs={"autoincrement": False})
    event_id: int = Field(sa_type=BigId, unique=True)
    customer_id: int | None = Field(default=None, sa_type=BigId)
    kind: str = Field(max_length=40)
    at: dt.datetime = Field(sa_type=UTCDateTime, nullable=False)


class OutboxHead(SQLModel, table=True):
    """The single row holding the last position handed out; its row lock orders positions by commit."""

    __tablename__ = "outbox_head"
    __table_args__ = (sa.CheckConstraint("id = 1", name="ck_outbox_head_one_row"),)

    id: int = Field(default=1, primary_key=True)
    last: int = Field(default=0, sa_type=sa.BigInteger)
    # every position up to here may have been pruned: a consumer behind it has missed events
    pruned_to: int = Field(default=0, sa_type=sa.BigInteger)


class EventConsumer(SQLModel, table=True):
    """A durable consumer of the change stream (a broker publisher, a batch job): how far it got."""

    __tablename__ = "event_consumer"

    name: str = Field(primary_key=True, max_length=100)
    position: int = Field(default=0, sa_type=sa.BigInteger)
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
