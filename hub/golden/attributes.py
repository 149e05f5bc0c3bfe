"""The person attributes the hub knows, by their storage (snake_case) and API (camelCase) names."""
from __future__ import annotations

import datetime as dt

ATTRIBUTES: tuple[str, ...] = (
    "given_name", "family_name", "date_of_birth", "email", "phone", "address_line1", "address_line2",
    "locality", "postcode", "region", "country", "national_id",
)
API_NAME: dict[str, str] = {
    a: a.split("_")[0] + "".join(p.capitalize() for p in a.split("_")[1:]) for a in ATTRIBUTES
}
STORAGE_NAME: dict[str, str] = {v: k for k, v in API_NAME.items()}
# one bit per attribute, for SourceRecord.invalid_fields (values sent but refused by validation)
INVALID_BIT: dict[str, int] = {a: 1 << i for i, a in enumerate(ATTRIBUTES)}


def invalid_mask(fields) -> int:
    """The invalid_fields bits of these refused fields (API names; others, such as the key, are ignored)."""
    mask = 0
    for f in fields:
        mask |= INVALID_BIT.get(STORAGE_NAME.get(f, ""), 0)
    return mask


def as_text(value: object) -> str | None:
    """Render a stored attribute value as the text the API shows (dates as ISO)."""
    if value is None:
        return None
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)
