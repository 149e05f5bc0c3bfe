"""Golden records and the lineage of each of their values."""
from __future__ import annotations

import datetime as dt

from sqlmodel import Field, SQLModel

from hub.models.person import PersonColumns
from hub.models.types import BigId, UTCDateTime, utcnow

ACTIVE, MERGED, RETIRED = "ACTIVE", "MERGED", "RETIRED"
# erased (right to erasure or retention): personal columns null, a tombstone in `erasure`
ERASED = "ERASED"


class Customer(PersonColumns, table=True):
    __tablename__ = "customer"

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    status: str = Field(default=ACTIVE, max_length=10)
    # a merged-away golden record forwards here, for ever
    merged_into: int | None = Field(default=None, sa_type=BigId, foreign_key="customer.id", index=True)
    version: int = Field(default=1)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)


class Lineage(SQLModel, table=True):
    """Where one golden value came from: the source record and the survivorship rule."""

    __tablename__ = "lineage"

    customer_id: int = Field(sa_type=BigId, foreign_key="customer.id", primary_key=True)
    field: str = Field(primary_key=True, max_length=40)  # camelCase attribute name, as in the API
    value: str | None = Field(default=None, max_length=320)
    source_record_id: int | None = Field(default=None, sa_type=BigId, index=True)
    rule: str = Field(max_length=40)
    actor: str | None = Field(default=None, max_length=200)  # who set a steward override
