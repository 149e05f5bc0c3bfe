"""The authorization policy (Casbin rows) and its revision counter, edited with `hub policy`."""
from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from hub.models.types import BigId, UTCDateTime, utcnow


class AuthzRule(SQLModel, table=True):
    """One policy row: ("p", role, object, action, effect), or ("g", member role, parent role) with the
    parent in `object` and `action`/`effect` empty (empty strings, not NULL, so the unique constraint
    also holds for g rows on PostgreSQL)."""

    __tablename__ = "authz_rule"
    __table_args__ = (sa.UniqueConstraint("ptype", "subject", "object", "action", "effect", name="uq_authz_rule"),)

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    ptype: str = Field(max_length=1)
    subject: str = Field(max_length=100)
    object: str = Field(max_length=200)
    action: str = Field(default="", max_length=20)
    effect: str = Field(default="", max_length=10)


class AuthzRevision(SQLModel, table=True):
    """The single row counting policy edits: a server notices a change with one primary-key read."""

    __tablename__ = "authz_revision"
    __table_args__ = (sa.CheckConstraint("id = 1", name="ck_authz_revision_one_row"),)

    id: int = Field(default=1, primary_key=True)
    revision: int = Field(default=1, sa_type=sa.BigInteger)
    updated_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
