"""Steward decisions the hub must remember: pairs never to link again, and manual merges."""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from hub.models.types import BigId, UTCDateTime, utcnow

NOT_A_MATCH, SPLIT, MANUAL_MERGE = "NOT_A_MATCH", "SPLIT", "MANUAL_MERGE"


class StewardRule(SQLModel, table=True):
    """One steward decision as a constraint on linking.

    NOT_A_MATCH: the two golden records are different customers (never merged automatically).
    SPLIT: the source record was moved out of `other_customer_id` into `customer_id`; it never
    links back, and the two golden records never merge automatically.
    MANUAL_MERGE: a steward merged the two; a batch re-match never splits them.
    Golden ids follow merges (a merged-away id is rewritten to its survivor).
    """

    __tablename__ = "steward_rule"
    __table_args__ = (sa.Index("ix_steward_rule_customer", "customer_id", "active"),
                      sa.Index("ix_steward_rule_other", "other_customer_id", "active"))

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    kind: str = Field(max_length=16)
    customer_id: int = Field(sa_type=BigId)
    other_customer_id: int = Field(sa_type=BigId)
    source_record_id: int | None = Field(default=None, sa_type=BigId)
    active: bool = Field(default=True)
    actor: str = Field(max_length=200)
    at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    note: str | None = Field(default=None)
