"""The standardised person attributes, as columns: shared by source records and golden records."""
from __future__ import annotations

import datetime as dt

from sqlmodel import Field, SQLModel

from hub.models.types import SealedAttribute


class PersonColumns(SQLModel):
    given_name: str | None = Field(default=None, max_length=200)
    family_name: str | None = Field(default=None, max_length=200)
    # sealed at rest when HUB_ENCRYPTED_ATTRIBUTES names them (hub.privacy.sealing); read back in clear
    date_of_birth: dt.date | None = Field(default=None, sa_type=SealedAttribute("date_of_birth"))
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=32)
    address_line1: str | None = Field(default=None, max_length=300)
    address_line2: str | None = Field(default=None, max_length=300)
    locality: str | None = Field(default=None, max_length=200)
    postcode: str | None = Field(default=None, max_length=32)
    region: str | None = Field(default=None, max_length=200)
    country: str | None = Field(default=None, max_length=2)
    national_id: str | None = Field(default=None, sa_type=SealedAttribute("national_id"))
