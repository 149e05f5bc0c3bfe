"""API tokens: only a hash is stored; the token itself is shown once, when minted."""
from __future__ import annotations

import datetime as dt

from sqlmodel import Field, SQLModel

from hub.models.types import BigId, UTCDateTime, utcnow


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_token"

    id: int | None = Field(default=None, sa_type=BigId, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True)
    subject: str = Field(max_length=200, index=True)
    role: str = Field(max_length=50)
    system: str | None = Field(default=None, max_length=100)
    created_at: dt.datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, nullable=False)
    revoked_at: dt.datetime | None = Field(default=None, sa_type=UTCDateTime)
