"""Privacy: consent (history and current state per customer and purpose) and the audit of sensitive reads."""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from hub.models.types import BigId, UTCDateTime, utcnow


class ConsentStatement(SQLModel, table=True):
    """One consent statement, as given: append-only, never updated but to follow its customer.

    `customer_id` is the golden record it counts for now: a statement that came with a source record
    follows that record through merges, splits and unmerges; one set in the hub (no record) follows
    merges of its customer.
    """

    __tablename__ = "consent_statement"
    __table_args__ = (sa.Index("ix_consent_statement_customer", "customer_id", "purpose", "at"),)

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    customer_id: int = Field(sa_type=BigId)
    purpose: str = Field(max_length=64)
    granted: bool
    at: dt.datetime = Field(sa_type=UTCDateTime, nullable=False)  # when the person gave or withdrew it
    recorded_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    system: str | None = Field(default=None, max_length=100)  # the source system that reported it
    source_record_id: int | None = Field(default=None, sa_type=BigId, index=True)
    actor: str = Field(max_length=200)
    evidence: str | None = Field(default=None, max_length=1000)


class Consent(SQLModel, table=True):
    """The current state per customer and purpose: the latest statement (the row-level filter's index)."""

    __tablename__ = "consent"
    __table_args__ = (sa.Index("ix_consent_purpose_granted_customer", "purpose", "granted", "customer_id"),)

    customer_id: int = Field(sa_type=BigId, primary_key=True)
    purpose: str = Field(max_length=64, primary_key=True)
    granted: bool
    statement_id: int = Field(sa_type=BigId)
    at: dt.datetime = Field(sa_type=UTCDateTime, nullable=False)


class ReadAudit(SQLModel, table=True):
    """One read of a sensitive value: who (token subject and role), whose, which field, how, when, request."""

    __tablename__ = "read_audit"
    __table_args__ = (sa.Index("ix_read_audit_customer_field", "customer_id", "field", "id"),)

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    at: dt.datetime = Field(sa_type=UTCDateTime, nullable=False)
    subject: str = Field(max_length=200)
    role: str = Field(max_length=50)
    customer_id: int = Field(sa_type=BigId)
    field: str = Field(max_length=40)   # the attribute (API name): nationalId, dateOfBirth
    via: str = Field(max_length=40)     # the type that served it: Customer, SourceRecord, AttributeLineage, ...
    masked: bool = Field(default=False)  # only the masked form was served
    request_id: str | None = Field(default=None, max_length=64)
