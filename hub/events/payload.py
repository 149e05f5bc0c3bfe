"""What a subscriber receives of a change: only what its role may read, decided by the same policy as queries.

A change names the golden record, its new version, the kind, the changed attributes and, for merges
and splits, the other golden record(s). An attribute the role may not read is absent: no name in
`fields`, no key in `values` (even its name would tell that, say, a national id changed). A masked
attribute is listed and its value masked.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from authz import Access, Authorizer, mask
from hub.events.outbox import StoredChange
from hub.golden.attributes import API_NAME

CHANGE_TYPE = "CustomerChange"  # the GraphQL type the policy rows name (CustomerChange.values, ...)
ATTRIBUTES = frozenset(API_NAME.values())
# a masked date would still tell its month and day: masking one denies it (as in the GraphQL layer)
UNMASKABLE = frozenset({"dateOfBirth"})


class View:
    """One role's reading of changes, memoised per attribute (Casbin decides once per policy)."""

    def __init__(self, authorizer: Authorizer, role: str) -> None:
        self.authorizer, self.role = authorizer, role
        self._access: dict[str, Access] = {}
        # consent purposes the role is bound to: it sees only the changes of customers who granted them
        self.purposes: frozenset[str] = authorizer.purposes(role)

    def access(self, attribute: str) -> Access:
        found = self._access.get(attribute)
        if found is None:
            found = self.authorizer.value_access(self.role, CHANGE_TYPE, "values", attribute)
            if found is Access.MASK and attribute in UNMASKABLE:
                found = Access.DENY
            self._access[attribute] = found
        return found

    def may_read(self, field: str) -> bool:
        """A non-attribute field of a change (customerId, kind, ...)."""
        return self.authorizer.field_access(self.role, CHANGE_TYPE, field) is Access.ALLOW


def _after(change: Any) -> Any:
    """An entry of an event's `fields`: {before, after} for updates, the plain value for creations."""
    return change.get("after") if isinstance(change, Mapping) else change


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _ids(value: Any) -> list[int]:
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    return [int(v) for v in values if isinstance(v, int) and not isinstance(v, bool)]


def related(kind: str, changes: Mapping[str, Any], customer_id: int | None) -> tuple[int | None, list[int]]:
    """(merged into, the other golden records) of a change: both ids of merges, splits and unmerges."""
    into = _ids(changes.get("into"))
    if kind == "MERGED_AWAY":
        return (into[0] if into else None), into
    split = changes.get("split")
    others = [*_ids(changes.get("merged")), *into, *_ids(changes.get("from")), *_ids(changes.get("split_from")),
              *_ids(changes.get("unmerged")), *_ids(changes.get("unmerged_from")), *_ids(changes.get("other")),
              *(_ids(split.get("into")) if isinstance(split, Mapping) else [])]
    return None, [i for i in dict.fromkeys(others) if i != customer_id]


def message(change: StoredChange, view: View) -> dict[str, Any]:
    """A change as a role may see it, as plain JSON-ready data."""
    fields: list[str] = []
    values: dict[str, str | None] = {}
    for name, entry in (change.changes.get("fields") or {}).items():
        if name not in ATTRIBUTES:
            continue
        access = view.access(name)
        if access is Access.DENY:
            continue
        fields.append(name)
        value = _text(_after(entry))
        values[name] = mask(value) if access is Access.MASK else value
    merged_into, others = related(change.kind, change.changes, change.customer_id)
    version = change.changes.get("version")
    return {"position": change.position, "customerId": change.customer_id, "kind": change.kind,
            "version": version if isinstance(version, int) else None,
            "committedAt": change.committed_at.isoformat(), "fields": fields, "values": values,
            "mergedInto": merged_into, "otherCustomerIds": others}


STRUCTURAL = frozenset({"MERGED", "MERGED_AWAY", "SPLIT", "UNMERGED", "RETIRED", "ERASED"})


def wanted(msg: Mapping[str, Any], fields: frozenset[str] | None) -> bool:
    """Whether a subscriber asking for changes of these fields wants this change (None: every change).

    Changes of the record itself (merges, splits, retirement, erasure) always pass: whoever follows an
    attribute of a customer must learn that the customer moved or is gone.
    """
    return (fields is None or msg["kind"] in STRUCTURAL or msg["mergedInto"] is not None
            or any(f in fields for f in msg["fields"]))
