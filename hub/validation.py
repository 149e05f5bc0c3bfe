"""What a client may send: length limits per field, the characters text may hold, ids, cursors, timestamps.

Pure functions (no database, no I/O): the GraphQL layer checks every argument with them before a
resolver runs (`schema.errors.operation`), standardisation checks every attribute with them (so a bad
attribute is a FieldError of its record, not a failed batch), and `hub load` goes through the same
registration path. The limits match the columns in hub.models (tests/test_validation.py checks it),
so PostgreSQL never refuses a value and SQLite never stores a longer one.
"""
from __future__ import annotations

import datetime as dt
import re
import unicodedata
from dataclasses import dataclass

from hub.errors import BadInput

# kinds of text: what characters each may hold
IDENTIFIER = "identifier"   # a key, a system name: one line, no invisible formatting characters
TEXT = "text"               # an attribute, a search term: tabs and newlines are read as spaces
MULTILINE = "multiline"     # a note, a description: tabs and line breaks kept


@dataclass(frozen=True)
class Limit:
    chars: int          # the most characters (code points) accepted, as received
    kind: str = TEXT


# Person attributes, by API name, as received (the standardised value must also fit its column:
# STORED_CHARS). Country, phone and date of birth may be written longer than they are stored.
ATTRIBUTE_LIMITS: dict[str, Limit] = {
    "givenName": Limit(200), "familyName": Limit(200), "dateOfBirth": Limit(40), "email": Limit(320),
    "phone": Limit(64), "addressLine1": Limit(300), "addressLine2": Limit(300), "locality": Limit(200),
    "postcode": Limit(32), "region": Limit(200), "country": Limit(100), "nationalId": Limit(64),
}
# the column sizes of the standardised attributes (hub.models.person.PersonColumns)
STORED_CHARS: dict[str, int] = {
    "givenName": 200, "familyName": 200, "email": 320, "phone": 32, "addressLine1": 300, "addressLine2": 300,
    "locality": 200, "postcode": 32, "region": 200, "country": 2, "nationalId": 64,
}
# Every other string a client sends, by argument or input-field name.
ARGUMENT_LIMITS: dict[str, Limit] = {
    "key": Limit(200, IDENTIFIER),
    "system": Limit(100, IDENTIFIER),
    "name": Limit(100, IDENTIFIER),             # SourceSystemInput.name
    "description": Limit(1000, MULTILINE),
    "defaultCountry": Limit(100),
    "note": Limit(2000, MULTILINE),
    "field": Limit(40, IDENTIFIER),             # overrideAttribute's attribute name
    "value": Limit(320),                        # overrideAttribute's value; then the attribute's own limit
    "after": Limit(200, IDENTIFIER),            # a cursor
    "id": Limit(20, IDENTIFIER), "ids": Limit(20, IDENTIFIER), "customerId": Limit(20, IDENTIFIER),
}
DEFAULT_LIMIT = Limit(1000)                     # a string argument not named above (one added later)

MAX_ID = 2**63 - 1                              # BIGINT
_ID = re.compile(r"[0-9]{1,19}")
_EPOCH_MIN = dt.datetime(1, 1, 2, tzinfo=dt.UTC)
# explicit bidirectional embeddings, overrides and isolates: they reorder how the rest of a line displays
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_ALLOWED_CONTROLS = {IDENTIFIER: frozenset(), TEXT: frozenset("\t\n\r"), MULTILINE: frozenset("\t\n\r")}
_PLAIN = re.compile(r"[ -~]*")                  # printable ASCII: the common case, checked at C speed
# every character text of any kind may not hold, but tab and line breaks: searched at C speed
_NONCHARACTERS = "".join(f"{chr(plane + 0xFFFE)}{chr(plane + 0xFFFF)}" for plane in range(0x10000, 0x110000, 0x10000))
_SUSPECT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069"
                      "\ufdd0-\ufdef\ufffe\uffff" + _NONCHARACTERS + "]")


def _bad_character(ch: str, kind: str) -> str | None:
    """Why one non-ASCII-printable character is refused in text of this kind, or None."""
    if ch in _ALLOWED_CONTROLS[kind]:
        return None
    if ch == "\x00":
        return "must not contain NUL bytes"
    category = unicodedata.category(ch)
    if category == "Cc":
        return f"must not contain control characters (U+{ord(ch):04X})"
    if category == "Cs":
        return f"must not contain lone surrogates (U+{ord(ch):04X}): it is not valid Unicode text"
    if ch in _BIDI_CONTROLS:
        return f"must not contain bidirectional override characters (U+{ord(ch):04X})"
    if (0xFDD0 <= ord(ch) <= 0xFDEF) or (ord(ch) & 0xFFFE) == 0xFFFE:
        return f"must not contain Unicode noncharacters (U+{ord(ch):04X})"
    if kind == IDENTIFIER and category in ("Cf", "Zl", "Zp"):
        return f"must not contain invisible formatting characters (U+{ord(ch):04X})"
    return None


def text_problem(value: object, limit: Limit) -> str | None:
    """Say why a value sent as text is refused (not text, too long, a character it may not hold), or None."""
    if not isinstance(value, str):
        return f"must be a string, not {type(value).__name__}"
    if len(value) > limit.chars:
        return f"must be at most {limit.chars} characters (got {len(value)})"
    if _PLAIN.fullmatch(value):
        return None
    if limit.kind != IDENTIFIER:
        found = _SUSPECT.search(value)
        return None if found is None else _bad_character(found.group(), limit.kind)
    for ch in value:
        if not " " <= ch <= "~" and (why := _bad_character(ch, limit.kind)) is not None:
            return why
    return None


def check_text(value: str, field: str, limit: Limit | None = None) -> str:
    """Return a client's string unchanged, or refuse it (BAD_USER_INPUT) naming the field."""
    why = text_problem(value, limit or ARGUMENT_LIMITS.get(field, DEFAULT_LIMIT))
    if why is not None:
        raise BadInput(f"{field} {why}")
    return value


def shown(value: object, chars: int = 40) -> str:
    """A client's value as an error message may quote it: escaped (repr) and cut short."""
    text = repr(value)
    return text if len(text) <= chars else text[:chars] + "..."


def safe_echo(value: object, chars: int = 200) -> str:
    """A refused identifier as a response may echo it: at most `chars` characters, every character that is
    not valid text (surrogates, controls, NUL) replaced by U+FFFD."""
    text = value if isinstance(value, str) else "" if value is None else str(value)
    text = text[:chars]
    if _PLAIN.fullmatch(text):
        return text
    return "".join("\ufffd" if _bad_character(ch, TEXT) or ch in "\t\n\r" else ch for ch in text)


def parse_id(value: object, what: str = "customer id") -> int:
    """Read a numeric id: decimal digits within the BIGINT range, else BAD_USER_INPUT."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _ID.fullmatch(value):
        number = int(value)
    else:
        raise BadInput(f"{shown(value)} is not a {what}: expected 1 to 19 decimal digits")
    if not 1 <= number <= MAX_ID:
        raise BadInput(f"{shown(value)} is not a {what}: ids run from 1 to {MAX_ID}")
    return number


def utc(value: dt.datetime, field: str) -> dt.datetime:
    """The moment as an aware UTC datetime (naive means UTC); refuse one with no UTC equivalent."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    try:
        moment = value.astimezone(dt.UTC)
    except OverflowError:
        raise BadInput(f"{field} {value.isoformat()} is out of range: in UTC it falls outside years 1 to 9999") \
            from None
    if moment < _EPOCH_MIN:
        raise BadInput(f"{field} {value.isoformat()} is out of range: the earliest accepted is "
                       f"{_EPOCH_MIN.isoformat()}")
    return moment


def updated_at_problem(value: dt.datetime, now: dt.datetime, max_skew: float) -> str | None:
    """Why a record's updatedAt is refused (no UTC equivalent, or further in the future than the skew allows)."""
    try:
        moment = utc(value, "updatedAt")
    except BadInput as e:
        return str(e)
    if moment > now + dt.timedelta(seconds=max_skew):
        return (f"updatedAt {moment.isoformat()} is more than {max_skew:g} s in the future (HUB_MAX_CLOCK_SKEW): "
                "check the source system's clock; the record was not stored")
    return None
