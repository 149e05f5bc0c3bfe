"""What every resolver sees: the caller, the hub's services, this request's loaders and access plan."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from time import monotonic
from typing import Any

from graphql import GraphQLError
from sqlalchemy.exc import DBAPIError
from starlette.requests import Request

from authz import Access, Authorizer, default_policy_rows
from hub.config import Settings
from hub.db import Database, Reads, unavailable
from hub.access.policy import REVISION_QUERY, RULES_QUERY, as_row
from hub.access.tokens import Principal
from hub.privacy.audit import Read, ReadAuditLog
from schema.loaders import Loaders

log = logging.getLogger("hub")

UNAVAILABLE = -1  # policy_revision when the policy tables could not be read and the default file is served


class FieldForbidden(GraphQLError):
    """A non-null field the caller may not read (the view keeps one such error per field)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"not allowed to read {name}", extensions={"code": "FORBIDDEN"})


@dataclass
class Services:
    """Long-lived parts of the running hub, built once at start-up."""

    db: Database
    settings: Settings
    authorizer: Authorizer
    scorer: Any = None  # the match model's real-time evaluator, when one is loaded
    audit: ReadAuditLog | None = None  # the process's queue of sensitive-read audit entries
    # seconds between two looks at the stored policy's revision (0: every request, as in tests)
    policy_check_interval: float = 1.0
    # the stored revision the authorizer holds: None before the first look, UNAVAILABLE if unreadable
    policy_revision: int | None = field(default=None, init=False)
    _policy_due: float = field(default=0.0, init=False, repr=False)
    # the data-quality report served from memory (schema.quality.QualityCache), made on first use
    quality_cache: Any = field(default=None, init=False, repr=False)

    def policy_check_due(self) -> bool:
        """Tell whether the stored policy's revision should be looked at now (a clock read: near free)."""
        return monotonic() >= self._policy_due

    async def refresh_policy(self, reads: Reads) -> None:
        """Look at the stored revision (one primary-key read); reload the authorizer when it changed."""
        self._policy_due = monotonic() + self.policy_check_interval  # concurrent requests do not look too
        try:
            found = await reads.first(REVISION_QUERY)
            revision = found[0] if found is not None else 0
            if revision == self.policy_revision:
                return
            rows = [as_row(r) for r in await reads.all(RULES_QUERY)]
        except Exception as e:
            if not isinstance(e, DBAPIError) and not unavailable(e):
                raise
            if self.policy_revision is None:  # start-up: no policy tables yet (database not migrated)
                log.warning("policy tables unreadable (%s); serving the default policy file", type(e).__name__)
                self._load(default_policy_rows(), UNAVAILABLE)
            return  # later: keep the policy held; the next look retries
        if not rows:
            log.warning("no policy rows in the database; serving the default policy file")
            self._load(default_policy_rows(), revision)
        else:
            self._load(rows, revision)

    def _load(self, rows: list[tuple[str, ...]], revision: int) -> None:
        """Swap the authorizer's policy; an invalid stored policy is logged and the held one kept."""
        try:
            self.authorizer.load(rows)
        except ValueError as e:
            log.error("stored policy revision %s refused, keeping the policy held: %s", revision, e)
        else:
            log.info("policy revision %s loaded (%d rows)", revision, len(rows))
        self.policy_revision = revision


@dataclass
class Context:
    request: Request | None
    response: Any
    services: Services
    principal: Principal
    reads: Reads
    loaders: Loaders
    # Type.field -> path of its first forbidden read: one FORBIDDEN error per field, not one per list item
    forbidden: dict[str, list] = field(default_factory=dict)
    # this request's log entry (request id, operation, role, status): the request line written by schema.app
    log: dict[str, Any] | None = None
    # consent purposes the caller's role is bound to: only customers who granted them all exist for it
    purposes: frozenset[str] = frozenset()
    request_id: str | None = None
    # sensitive values served by this request, handed to the read audit when the request ends
    sensitive_reads: list[Read] = field(default_factory=list)
    # this request's access plan: (Type, field) or (Type, field, attribute) -> Access, asked once each
    _plan: dict[tuple[str, ...], Access] = field(default_factory=dict)
    _audited: dict[tuple[str, str], bool] = field(default_factory=dict)
    # a websocket's: the bearer token (re-checked by long-lived subscriptions) and connection_init payload
    token: str | None = None
    connection_params: dict | None = None

    @property
    def db(self) -> Database:
        return self.services.db

    def access(self, type_name: str, field_name: str) -> Access:
        """How this caller may read one field (decided once per request)."""
        access = self._plan.get((type_name, field_name))
        if access is None:
            access = self._plan[type_name, field_name] = self.services.authorizer.field_access(
                self.principal.role, type_name, field_name)
        return access

    def value_access(self, type_name: str, field_name: str, attribute: str) -> Access:
        """Access to an attribute's value served by another field (lineage values, event changes)."""
        access = self._plan.get((type_name, field_name, attribute))
        if access is None:
            access = self._plan[type_name, field_name, attribute] = self.services.authorizer.value_access(
                self.principal.role, type_name, field_name, attribute)
        return access

    def note_read(self, type_name: str, attribute: str, customer_id: int | None, access: Access,
                  via: str | None = None) -> None:
        """Note that a value of `type_name.attribute` was served (in clear or masked) for the read audit,
        when the policy marks it sensitive for this role (decided once per request)."""
        if customer_id is None or access is Access.DENY:
            return
        audited = self._audited.get((type_name, attribute))
        if audited is None:
            audited = self._audited[type_name, attribute] = self.services.authorizer.audited(
                self.principal.role, type_name, attribute)
        if audited:
            self.sensitive_reads.append(Read(customer_id, attribute, via or type_name, access is Access.MASK))

    def allowed(self, type_name: str, field_name: str, path: Any) -> bool:
        """Tell whether a non-attribute field may be read; record the refusal when not."""
        if self.access(type_name, field_name) is Access.ALLOW:
            return True
        self.forbid(type_name, field_name, path)
        return False

    def require(self, type_name: str, field_name: str) -> None:
        """Refuse a non-null field the caller may not read (null cannot stand in for it)."""
        if self.access(type_name, field_name) is not Access.ALLOW:
            raise FieldForbidden(f"{type_name}.{field_name}")

    def forbid(self, type_name: str, field_name: str, path: Any) -> None:
        """Remember a forbidden read; the first one per field becomes the error."""
        name = f"{type_name}.{field_name}"
        if name not in self.forbidden:
            self.forbidden[name] = path.as_list()

    def sees_record(self, row: Any) -> bool:
        """Tell whether a source record is within reach: a token naming a system reaches that system's only."""
        own = self.principal.system
        return own is None or row.system == own

    def authorize(self, operation: str) -> None:
        """Refuse an operation the caller's role may not call."""
        if not self.services.authorizer.operation_allowed(self.principal.role, operation):
            raise GraphQLError(f"role {self.principal.role!r} may not call {operation}",
                               extensions={"code": "FORBIDDEN"})
