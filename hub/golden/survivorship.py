"""Survivorship: which source value each golden attribute takes, and why (lineage).

Each attribute has a rule; the address travels as one group so that a golden
address is never stitched from two different homes. Rules:

- `source-trust`: the value from the most trusted system; ties go to the most recent record.
- `most-recent`: the value from the most recently updated record; ties go to trust.
- `most-frequent`: the value most records agree on; ties go to trust, then recency.
- `steward-override`: a steward's value, kept until cleared (see overrides).
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from hub.golden.attributes import API_NAME, ATTRIBUTES

SOURCE_TRUST, MOST_RECENT, MOST_FREQUENT, STEWARD_OVERRIDE = (
    "source-trust", "most-recent", "most-frequent", "steward-override")
RULES = (SOURCE_TRUST, MOST_RECENT, MOST_FREQUENT)

# The address fields come from one record: the one the `address` rule picks among records with an address.
ADDRESS_GROUP: tuple[str, ...] = ("address_line1", "address_line2", "locality", "postcode", "region", "country")
ADDRESS_PRESENCE: tuple[str, ...] = ("address_line1", "locality", "postcode")

DEFAULT_RULES: dict[str, str] = {
    "givenName": SOURCE_TRUST,
    "familyName": SOURCE_TRUST,
    "dateOfBirth": MOST_FREQUENT,
    "nationalId": MOST_FREQUENT,
    "email": MOST_RECENT,
    "phone": MOST_RECENT,
    "address": MOST_RECENT,
}


@dataclass(frozen=True)
class Contribution:
    """One source record as survivorship sees it."""

    record_id: int
    trust: int
    updated_at: dt.datetime
    values: Mapping[str, object]


@dataclass(frozen=True)
class Chosen:
    value: object
    record_id: int | None
    rule: str


@dataclass
class Outcome:
    """The golden values (storage names) and, per API field name, where each came from."""

    values: dict[str, object] = field(default_factory=dict)
    lineage: dict[str, Chosen] = field(default_factory=dict)


def resolve_rules(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Merge configured rules over the defaults, refusing unknown fields or rules."""
    rules = dict(DEFAULT_RULES)
    for name, rule in (overrides or {}).items():
        if name not in rules and name not in API_NAME.values():
            raise ValueError(f"unknown survivorship field {name!r}")
        if rule not in RULES:
            raise ValueError(f"unknown survivorship rule {rule!r} for {name}; use one of {', '.join(RULES)}")
        rules[name] = rule
    return rules


def _trust_key(c: Contribution) -> tuple:
    return (c.trust, c.updated_at, c.record_id)


def _recent_key(c: Contribution) -> tuple:
    return (c.updated_at, c.trust, c.record_id)


def _pick(contributions: list[Contribution], rule: str, attr: str) -> Contribution | None:
    """Pick the contributing record for one attribute (or the address group when attr is None)."""
    if not contributions:
        return None
    if rule == SOURCE_TRUST:
        return max(contributions, key=_trust_key)
    if rule == MOST_RECENT:
        return max(contributions, key=_recent_key)
    counts: dict[object, int] = defaultdict(int)
    for c in contributions:
        counts[c.values[attr]] += 1
    return max(contributions, key=lambda c: (counts[c.values[attr]], *_trust_key(c)))


def survive(records: Iterable[Contribution], rules: Mapping[str, str] = DEFAULT_RULES,
            overrides: Mapping[str, str | None] | None = None) -> Outcome:
    """Compute a golden record from its source records.

    Args:
        records: the golden record's live source records.
        rules: rule per API field name (plus `address` for the address group).
        overrides: steward values per API field name; they win over every rule.
    """
    records = list(records)
    out = Outcome()
    address_rule = rules.get("address", MOST_RECENT)
    with_address = [c for c in records if any(c.values.get(a) for a in ADDRESS_PRESENCE)]
    home = _pick(with_address, address_rule if address_rule != MOST_FREQUENT else MOST_RECENT, "")
    for attr in ATTRIBUTES:
        api = API_NAME[attr]
        if attr in ADDRESS_GROUP and home is not None and home.values.get(attr) is not None:
            chosen = Chosen(home.values[attr], home.record_id, address_rule)
        elif attr in ADDRESS_GROUP and attr != "country":
            continue  # part of the address: never borrowed from another home
        else:
            rule = rules.get(api, SOURCE_TRUST)
            best = _pick([c for c in records if c.values.get(attr) is not None], rule, attr)
            if best is None:
                continue
            chosen = Chosen(best.values[attr], best.record_id, rule)
        out.values[attr] = chosen.value
        out.lineage[api] = chosen
    for api, value in (overrides or {}).items():
        attr = next(a for a, n in API_NAME.items() if n == api)
        out.lineage[api] = Chosen(value, None, STEWARD_OVERRIDE)
        out.values[attr] = value
    return out
