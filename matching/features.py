"""Comparison features derived once per record.

`features(rec)` turns a standardised hub record (snake_case attributes, all str or None)
into the flat feature row that both Splink (batch) and the Python evaluator (real time)
compare. `Prepared` is the evaluator's view of the same row plus a few cached derived values.
"""
from __future__ import annotations

from typing import Mapping

from .normalise import (
    clean, nickname_groups, norm_address, norm_dob, norm_email, norm_name, norm_national_id,
    norm_phone, norm_postcode, fold,
)

ATTRIBUTES: tuple[str, ...] = (
    "given_name", "family_name", "date_of_birth", "email", "phone", "address_line1", "address_line2",
    "locality", "postcode", "region", "country", "national_id",
)

# Columns Splink sees (plus unique_id). given_nick is a list of nickname-group names.
FEATURE_COLUMNS: tuple[str, ...] = (
    "given", "family", "given_nick", "dob", "email", "email_user", "phone", "phone7",
    "addr", "postcode", "locality", "nid",
)
STRING_FEATURES = tuple(c for c in FEATURE_COLUMNS if c != "given_nick")


def features(rec: Mapping[str, object]) -> dict:
    """The feature row of one standardised record (missing attributes -> None)."""
    get = rec.get
    given = norm_name(get("given_name"))
    family = norm_name(get("family_name"))
    email = norm_email(get("email"))
    phone = norm_phone(get("phone"))
    locality = clean(get("locality"))
    return {
        "given": given,
        "family": family,
        "given_nick": nickname_groups(given),
        "dob": norm_dob(get("date_of_birth")),
        "email": email,
        "email_user": email.split("@", 1)[0] if email else None,
        "phone": phone,
        "phone7": phone[-7:] if phone else None,
        "addr": norm_address(get("address_line1")),
        "postcode": norm_postcode(get("postcode")),
        "locality": (fold(locality) or None) if locality else None,
        "nid": norm_national_id(get("national_id")),
    }


class Prepared:
    """Feature row of one record, ready for `MatchModel.score` (cheap attribute access)."""

    __slots__ = STRING_FEATURES + ("nick", "dob_year", "dob_month", "dob_day", "dob_ym", "dob_md",
                                   "dob_yi", "tf", "id")

    def __init__(self, row: Mapping[str, object], tf: dict[str, float | None] | None = None, rid=None):
        for col in STRING_FEATURES:
            setattr(self, col, row.get(col))
        nick = row.get("given_nick")
        self.nick = frozenset(nick) if nick else frozenset()
        dob = self.dob
        if dob:
            self.dob_year, self.dob_month, self.dob_day = dob[0:4], dob[5:7], dob[8:10]
            self.dob_ym, self.dob_md = dob[0:7], dob[5:10]
            self.dob_yi = int(dob[0:4])
        else:
            self.dob_year = self.dob_month = self.dob_day = self.dob_ym = self.dob_md = None
            self.dob_yi = None
        self.tf = tf or {}          # term frequency per tf column (None when the value is unknown)
        self.id = rid

    def row(self) -> dict:
        out = {col: getattr(self, col) for col in STRING_FEATURES}
        out["given_nick"] = sorted(self.nick) if self.nick else None
        return out

    def __repr__(self) -> str:
        return f"Prepared({self.row()!r})"
