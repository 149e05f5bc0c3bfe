"""Erasure: the tombstone of an erased customer, the blocks against their return, and the tasks sent to sources.

None of these tables holds a personal value: blocks hold keyed hashes (HMAC, hub.privacy.keys), a task
holds the source's own record key only until the source acknowledges it, then its keyed hash.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from hub.models.types import BigId, UTCDateTime, utcnow

ERASURE, RETENTION = "ERASURE", "RETENTION"   # why a golden record was erased
KEY_BLOCK, RULE_BLOCK = "key", "rule"           # what an erasure block hashes


class Erasure(SQLModel, table=True):
    """The tombstone of an erased golden record: when, who, why, and how much was removed (counts only)."""

    __tablename__ = "erasure"

    customer_id: int = Field(sa_type=BigId, foreign_key="customer.id", primary_key=True)
    kind: str = Field(default=ERASURE, max_length=10)
    erased_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    actor: str = Field(max_length=200)
    note: str | None = Field(default=None)
    source_records: int = Field(default=0)
    merged_ids: list[int] | None = Field(default=None, sa_type=sa.JSON)
    counts: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    block_lifted_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    block_lifted_by: str | None = Field(default=None, max_length=200)
    block_lift_note: str | None = Field(default=None)


class ErasureBlock(SQLModel, table=True):
    """One keyed hash a registration is refused on: a (system, key) or an exact rule's value tuple."""

    __tablename__ = "erasure_block"

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    customer_id: int = Field(sa_type=BigId, index=True)   # the erasure (tombstone) it belongs to
    kind: str = Field(max_length=8)
    hash: str = Field(max_length=64, index=True)


class ErasureTask(SQLModel, table=True):
    """"Erase key K": sent to the source system that held an erased record, until it acknowledges."""

    __tablename__ = "erasure_task"
    __table_args__ = (sa.Index("ix_erasure_task_system_open", "system", "acknowledged_at", "id"),
                      sa.Index("ix_erasure_task_open_created", "acknowledged_at", "created_at"))

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    customer_id: int = Field(sa_type=BigId, index=True)   # the erasure it belongs to
    system: str = Field(max_length=100)
    key: str | None = Field(default=None, max_length=200)  # the source's key, kept until acknowledged
    key_hash: str = Field(max_length=64)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    acknowledged_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    acknowledged_by: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None)
