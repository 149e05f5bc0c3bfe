"""Authorization of the customer MDM hub: roles x GraphQL fields and operations, decided by Casbin.

Self-contained on purpose (standard library + casbin only, nothing else of the hub) so that it can be
reviewed alone. The model is ``model.conf``, the default policy ``policy.csv``; see ``README.md``.

Casbin's ``enforce()`` scans every policy row (tens of microseconds), so every decision is memoised in
plain dicts. A policy and its memos live together in one immutable ``_Policy``; changing the policy
builds a new ``_Policy`` completely and then swaps one reference, so readers see either the old or the
new policy, never a half-built one, and never a decision of the old policy under the new one.
"""

from __future__ import annotations

import enum
import functools
import pathlib
import re
import threading
from collections.abc import Iterable, Sequence

import casbin
from casbin.persist import Adapter

__all__ = ["ACTIONS", "ALL_SYSTEMS", "REGISTER_OPERATION", "Access", "Authorizer", "default_model_path", "default_policy_rows", "mask",
           "validate_row"]

_HERE = pathlib.Path(__file__).resolve().parent

# the operation whose callers are bound to one source system, unless they may write ALL_SYSTEMS
REGISTER_OPERATION = "Mutation.registerRecords"
ALL_SYSTEMS = "Systems.all"

# read/read-masked/write/call: field and operation access. audit: reading the field is recorded (the
# field is sensitive). require-consent: the object is a consent purpose; the role sees only customers
# who granted it (row-level access).
ACTIONS = frozenset({"read", "read-masked", "write", "call", "audit", "require-consent"})
ANY_ROLE = "*"  # the subject of a p row that applies to every role the policy knows
_ROLE = re.compile(r"[A-Za-z0-9_.:-]+")
_OBJECT = re.compile(r"[A-Za-z0-9_*]+(?:\.[A-Za-z0-9_*]+)?")  # *, Customer.*, *.nationalId, Query.x
_PURPOSE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")  # a consent purpose: marketing-email, profiling


class Access(enum.Enum):
    ALLOW = "allow"  # the value in clear
    MASK = "mask"  # mask(value) only
    DENY = "deny"  # nothing


_STRICTNESS = {Access.DENY: 0, Access.MASK: 1, Access.ALLOW: 2}


def default_model_path() -> pathlib.Path:
    return _HERE / "model.conf"


def default_policy_rows() -> list[tuple[str, ...]]:
    """The rows of policy.csv (comments and blank lines dropped), validated."""
    text = (_HERE / "policy.csv").read_text(encoding="utf-8")
    return [validate_row(line.split(",")) for line in map(str.strip, text.splitlines()) if line and line[0] != "#"]


def mask(value: str | None, keep: int = 4) -> str | None:
    """"123-45-6789" -> "*******6789". A value not longer than ``keep`` is masked entirely."""
    if value is None:
        return None
    if keep <= 0 or len(value) <= keep:
        return "*" * len(value)
    return "*" * (len(value) - keep) + value[-keep:]


def validate_row(row: Sequence[str]) -> tuple[str, ...]:
    """Normalise one row; reject anything Casbin would silently ignore or misread (a typo in a deny
    row must not quietly leave a field open). Raises ValueError."""
    r = tuple(str(x).strip() for x in row)
    if len(r) == 5 and r[0] == "p":
        _, sub, obj, act, eft = r
        good_obj = _PURPOSE.fullmatch(obj) if act == "require-consent" else _OBJECT.fullmatch(obj)
        if (_ROLE.fullmatch(sub) or sub == ANY_ROLE) and good_obj and act in ACTIONS and eft in ("allow", "deny"):
            return r
    elif len(r) == 3 and r[0] == "g" and _ROLE.fullmatch(r[1]) and _ROLE.fullmatch(r[2]):
        return r
    raise ValueError(f"invalid policy row {tuple(row)!r}: expected (p, role or *, object, action, allow|deny) "
                     f"with action in {sorted(ACTIONS)} (require-consent: the object is a purpose, lower-case "
                     f"letters, digits, - and _), or (g, member role, parent role)")


def _rows(rows: Iterable[Sequence[str]]) -> tuple[tuple[str, ...], ...]:
    return tuple(dict.fromkeys(validate_row(r) for r in rows))  # validated, duplicates dropped, order kept


@functools.lru_cache(maxsize=1024)
def _obj_pattern(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(map(re.escape, pattern.split("*"))))


def _obj_match(obj: str, pattern: str) -> bool:
    """objMatch of model.conf: "*" in ``pattern`` matches any run of characters, the rest is literal."""
    return _obj_pattern(pattern).fullmatch(obj) is not None


class _RowsAdapter(Adapter):
    """In-memory Casbin adapter: the policy is the rows it was given (persisting is the caller's job)."""

    def __init__(self, rows: tuple[tuple[str, ...], ...]):
        self._rows = rows

    def load_policy(self, model) -> None:
        for ptype, *rule in self._rows:
            model.add_policy(ptype, ptype, rule)  # section "p"/"g" == ptype


class _Policy:
    """One policy version: its rows, the enforcer built from them, and the memos of its decisions."""

    __slots__ = ("rows", "roles", "enforcer", "lock", "decisions", "fields", "plans", "purposes", "consent_purposes")

    def __init__(self, rows: tuple[tuple[str, ...], ...]):
        self.rows = rows
        self.roles = frozenset(r[1] for r in rows if r[1] != ANY_ROLE)  # subjects of p rows, members of g rows
        # every purpose some require-consent row names: the candidates of Authorizer.purposes
        self.consent_purposes = tuple(sorted({r[2] for r in rows if r[0] == "p" and r[3] == "require-consent"}))
        self.enforcer = casbin.Enforcer(str(default_model_path()), _RowsAdapter(rows))
        self.enforcer.add_function("objMatch", _obj_match)
        self.lock = threading.Lock()  # enforce() mutates enforcer state: one at a time (memo misses only)
        self.decisions: dict[tuple[str, str, str], bool] = {}
        self.fields: dict[tuple[str, str, str], Access] = {}
        self.plans: dict[tuple[str, str, tuple[str, ...]], dict[str, Access]] = {}
        self.purposes: dict[str, frozenset[str]] = {}


class Authorizer:
    """Role-based decisions over GraphQL fields ("Type.field") and operations ("Query.x", "Mutation.x")."""

    def __init__(self, rows: Iterable[Sequence[str]] | None = None):
        self._write_lock = threading.Lock()
        self._policy = _Policy(_rows(default_policy_rows() if rows is None else rows))

    # -- decisions ---------------------------------------------------------------------------------

    def can(self, role: str, obj: str, action: str) -> bool:
        return self._can(self._policy, role, obj, action)

    def field_access(self, role: str, type_name: str, field: str) -> Access:
        """read allowed -> ALLOW; else read-masked allowed -> MASK; else DENY."""
        return self._field_access_memo(self._policy, role, type_name, field)

    def operation_allowed(self, role: str, operation: str) -> bool:
        """operation is "Query.x" or "Mutation.x"."""
        return self._can(self._policy, role, operation, "call")

    def field_plan(self, role: str, type_name: str, fields: Iterable[str]) -> dict[str, Access]:
        """Access to each of ``fields`` of ``type_name``, decided once per (role, type, fields)."""
        policy = self._policy
        key = (role, type_name, tuple(fields))
        plan = policy.plans.get(key)
        if plan is None:
            plan = {f: self._field_access(policy, role, type_name, f) for f in key[2]}
            if role in policy.roles:  # memo keys come from the schema and known roles only
                policy.plans[key] = plan
        return dict(plan)  # a copy: the caller cannot alter the memo

    def may_write(self, role: str, type_name: str, field: str) -> bool:
        """Whether a role may set a field: it needs ``write`` on it AND may read it in clear.

        Writing what one may not read is an oracle: a write that changes nothing (same version, same
        result) tells that the guessed value was already there.
        """
        policy = self._policy
        return (self._can(policy, role, f"{type_name}.{field}", "write")
                and self._field_access_memo(policy, role, type_name, field) is Access.ALLOW)

    def system_bound(self, role: str) -> bool:
        """Whether a role's tokens must name one source system, and reach that system's records only.

        Decided by what the policy lets the role do, not by its name: a role that may call
        ``Mutation.registerRecords`` is bound unless it may also ``write`` ``Systems.all`` (every
        system's records; the default policy grants that to ``admin`` through its ``*`` row). A role
        that inherits ``source`` is therefore bound like ``source``.
        """
        policy = self._policy
        return (self._can(policy, role, REGISTER_OPERATION, "call")
                and not self._can(policy, role, ALL_SYSTEMS, "write"))

    def value_access(self, role: str, type_name: str, field: str, attribute: str) -> Access:
        """Access to a value that belongs to a Customer person attribute but is served by another field
        (AttributeLineage.value, an entry of CustomerEvent.changes): the stricter of the field's own
        access and the access to Customer.<attribute>."""
        a = self.field_access(role, type_name, field)
        b = self.field_access(role, "Customer", attribute)
        return a if _STRICTNESS[a] <= _STRICTNESS[b] else b

    def purposes(self, role: str) -> frozenset[str]:
        """The consent purposes a role is bound to: it may see only customers who granted every one of them.

        Decided by Casbin like any other access (rows ``p, role, <purpose>, require-consent, allow``,
        inherited through g, a deny row lifts the binding) and memoised per role. An unknown role gets no
        binding here, and no access at all elsewhere.
        """
        policy = self._policy
        found = policy.purposes.get(role)
        if found is None:
            found = frozenset(p for p in policy.consent_purposes if self._can(policy, role, p, "require-consent"))
            if role in policy.roles:
                policy.purposes[role] = found
        return found

    def audited(self, role: str, type_name: str, field: str) -> bool:
        """Whether reading ``type_name.field`` as ``role`` must be recorded (the policy marks it sensitive)."""
        return self._can(self._policy, role, f"{type_name}.{field}", "audit")

    # -- policy ------------------------------------------------------------------------------------

    @property
    def rows(self) -> list[tuple[str, ...]]:
        return list(self._policy.rows)

    def load(self, rows: Iterable[Sequence[str]]) -> None:
        """Replace the whole policy (e.g. from the database); every memo starts empty."""
        new_rows = _rows(rows)
        with self._write_lock:
            self._policy = _Policy(new_rows)

    def add(self, row: Sequence[str]) -> bool:
        """Add one row; False if it is already there."""
        row = validate_row(row)
        with self._write_lock:
            rows = self._policy.rows
            if row in rows:
                return False
            self._policy = _Policy(rows + (row,))
        return True

    def remove(self, row: Sequence[str]) -> bool:
        """Remove one row; False if it is not there."""
        row = validate_row(row)
        with self._write_lock:
            rows = self._policy.rows
            if row not in rows:
                return False
            self._policy = _Policy(tuple(r for r in rows if r != row))
        return True

    # -- internals: always against one policy snapshot ---------------------------------------------

    @staticmethod
    def _can(policy: _Policy, role: str, obj: str, action: str) -> bool:
        key = (role, obj, action)
        allowed = policy.decisions.get(key)
        if allowed is None:
            if role not in policy.roles:
                return False  # unknown role: denied, and not memoised (no growth from junk roles)
            with policy.lock:
                allowed = bool(policy.enforcer.enforce(role, obj, action))
            policy.decisions[key] = allowed
        return allowed

    @classmethod
    def _field_access_memo(cls, policy: _Policy, role: str, type_name: str, field: str) -> Access:
        access = policy.fields.get((role, type_name, field))
        if access is None:
            access = cls._field_access(policy, role, type_name, field)
        return access

    @classmethod
    def _field_access(cls, policy: _Policy, role: str, type_name: str, field: str) -> Access:
        obj = f"{type_name}.{field}"
        if cls._can(policy, role, obj, "read"):
            access = Access.ALLOW
        elif cls._can(policy, role, obj, "read-masked"):
            access = Access.MASK
        else:
            access = Access.DENY
        if role in policy.roles:
            policy.fields[(role, type_name, field)] = access
        return access
