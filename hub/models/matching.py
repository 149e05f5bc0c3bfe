"""Matching state: blocking keys for candidate lookup, and match candidates for stewards."""
from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from hub.models.types import BigId, UTCDateTime, utcnow

PENDING, ACCEPTED, REJECTED, SUPERSEDED = "PENDING", "ACCEPTED", "REJECTED", "SUPERSEDED"
# a match model's life: stored as a candidate by `hub train`, promoted (at most one at a time: the one
# the hub matches with), retired when another is promoted
CANDIDATE, PROMOTED, RETIRED = "candidate", "promoted", "retired"


class BlockingKey(SQLModel, table=True):
    """One blocking key of one source record: candidates are found by `key IN (...)` on this index."""

    __tablename__ = "blocking_key"

    key: str = Field(primary_key=True, max_length=200)
    source_record_id: int = Field(sa_type=BigId, primary_key=True, index=True)


class MatchCandidate(SQLModel, table=True):
    """Two golden records that may be one customer, waiting for a steward."""

    __tablename__ = "match_candidate"
    __table_args__ = (sa.Index("ix_match_candidate_status_id", "status", "id"),
                      sa.Index("ix_match_candidate_status_uncertainty", "status", "uncertainty", "id"))

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    customer_id: int = Field(sa_type=BigId, foreign_key="customer.id", index=True)
    other_customer_id: int = Field(sa_type=BigId, foreign_key="customer.id", index=True)
    probability: float
    # distance from the middle of the review band: the queue serves the most uncertain first
    uncertainty: float = Field(default=0.0)
    explanation: list[dict[str, Any]] | None = Field(default=None, sa_type=sa.JSON)
    status: str = Field(default=PENDING, max_length=12)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    resolved_by: str | None = Field(default=None, max_length=200)
    resolved_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
    note: str | None = Field(default=None)


class MatchModelVersion(SQLModel, table=True):
    """A trained match model (Splink 5 JSON), versioned; the hub uses the promoted one unless told otherwise."""

    __tablename__ = "match_model"
    __table_args__ = (sa.Index("ix_match_model_status_id", "status", "id"),)

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    actor: str = Field(max_length=200)
    records: int = Field(default=0)           # how many source records it was trained on
    seconds: float = Field(default=0.0)       # training time
    params: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)   # training parameters
    model: dict[str, Any] = Field(sa_type=sa.JSON)
    note: str | None = Field(default=None)
    status: str = Field(default=CANDIDATE, max_length=12)
    promoted_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)   # last promotion
    evaluation: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)     # against the promoted one
