"""Source records: what a source system sent (raw) and what the hub made of it (standardised)."""
from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from hub.models.person import PersonColumns
from hub.models.types import BigId, SealedJSON, UTCDateTime, utcnow


class SourceRecord(PersonColumns, table=True):
    __tablename__ = "source_record"
    __table_args__ = (
        sa.UniqueConstraint("system", "key", name="uq_source_record_system_key"),
        sa.Index("ix_source_record_system_id", "system", "id"),
        # the deterministic rules look records up by keyed hash, never by the (sealed) value
        sa.Index("ix_source_record_email_dob_hash", "email", "date_of_birth_hash"),
        sa.Index("ix_source_record_national_id_hash", "national_id_hash"),
        # name-only search (findCustomers by given and family name): standardised names, indexed lookups
        sa.Index("ix_source_record_family_given", "family_name", "given_name"),
    )

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    system: str = Field(foreign_key="source_system.name", max_length=100)
    key: str = Field(max_length=200)
    customer_id: int = Field(sa_type=BigId, foreign_key="customer.id", index=True)
    raw: dict[str, Any] = Field(default_factory=dict, sa_type=SealedJSON("raw"))
    # hash of the raw attributes: the same record sent again is recognised without comparing columns
    content_hash: str = Field(max_length=64)
    # the match model's comparison features, derived once when the record is stored, so candidates
    # are scored without normalising them again (None: derive on demand)
    match_features: dict[str, Any] | None = Field(default=None, sa_type=SealedJSON("features"))
    # keyed hashes (HMAC) of the sealable attributes, for lookups without decrypting (hub.privacy.sealing)
    national_id_hash: str | None = Field(default=None, max_length=64)
    date_of_birth_hash: str | None = Field(default=None, max_length=64)
    # attributes the source sent but validation refused (kept in raw, left out of the columns), one bit per
    # attribute in hub.golden.attributes.ATTRIBUTES order: the data-quality dashboard counts them per system
    invalid_fields: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    updated_at: dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    received_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
