"""Source systems: the silos that send customer records."""
from __future__ import annotations

import datetime as dt

from sqlmodel import Field, SQLModel

from hub.models.types import UTCDateTime, utcnow


class SourceSystem(SQLModel, table=True):
    __tablename__ = "source_system"

    name: str = Field(primary_key=True, max_length=100)
    description: str | None = Field(default=None, max_length=1000)
    date_order: str = Field(default="YMD", max_length=3)
    default_country: str | None = Field(default=None, max_length=2)
    trust: int = Field(default=50)
    # kept by registration and deletion in the same transaction, so reading it never counts rows
    record_count: int = Field(default=0)
    # records not updated for this many days are removed by `hub retention run` (None: kept)
    retention_days: int | None = Field(default=None)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
