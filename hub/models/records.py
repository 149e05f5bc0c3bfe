"""Source records: what a source system sent (raw) and what the hub made of it (standardised)."""
from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from hub.models.person import PersonColumns
from hub.models.types import BigId, UTCDateTime, utcnow


class SourceRecord(PersonColumns, table=True):
    __tablename__ = "source_record"
    __table_args__ = (
        sa.UniqueConstraint("system", "key", name="uq_source_record_system_key"),
        sa.Index("ix_source_record_system_id", "system", "id"),
        sa.Index("ix_source_record_email_dob", "email", "date_of_birth"),
        sa.Index("ix_source_record_national_id", "national_id"),
        # name-only search (findCustomers by given and family name): standardised names, indexed lookups
        sa.Index("ix_source_record_family_given", "family_name", "given_name"),
    )

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    system: str = Field(foreign_key="source_system.name", max_length=100)
    key: str = Field(max_length=200)
    customer_id: int = Field(sa_type=BigId, foreign_key="customer.id", index=True)
    raw: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    # hash of the raw attributes: the same record sent again is recognised without comparing columns
    content_hash: str = Field(max_length=64)
    # the match model's comparison features, derived once when the record is stored, so candidates
    # are scored without normalising them again (None: derive on demand)
    match_features: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    # attributes the source sent but validation refused (kept in raw, left out of the columns), one bit per
    # attribute in hub.golden.attributes.ATTRIBUTES order: the data-quality dashboard counts them per system
    invalid_fields: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    updated_at: dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    received_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
