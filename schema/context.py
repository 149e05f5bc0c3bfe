"""What every resolver sees: the caller, the hub's services, this request's loaders and access plan."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from graphql import GraphQLError
from starlette.requests import Request

from authz import Access, Authorizer
from hub.config import Settings
from hub.db import Database, Reads
from hub.tokens import Principal
from schema.loaders import Loaders


@dataclass
class Services:
    """Long-lived parts of the running hub, built once at start-up."""

    db: Database
    settings: Settings
    authorizer: Authorizer
    scorer: Any = None  # the match model's real-time evaluator, when one is loaded


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
    _plans: dict[str, dict[str, Access]] = field(default_factory=dict)

    @property
    def db(self) -> Database:
        return self.services.db

    def access(self, type_name: str, field_name: str) -> Access:
        """How this caller may read one field (decided once per request and type)."""
        plan = self._plans.get(type_name)
        if plan is None:
            plan = self._plans[type_name] = {}
        access = plan.get(field_name)
        if access is None:
            access = plan[field_name] = self.services.authorizer.field_access(self.principal.role, type_name,
                                                                              field_name)
        return access

    def value_access(self, type_name: str, field_name: str, attribute: str) -> Access:
        """Access to an attribute's value served by another field (lineage values, event changes)."""
        key = f"{type_name}.{field_name}:{attribute}"
        plan = self._plans.setdefault("", {})
        access = plan.get(key)
        if access is None:
            access = plan[key] = self.services.authorizer.value_access(self.principal.role, type_name, field_name,
                                                                       attribute)
        return access

    def allowed(self, type_name: str, field_name: str, path: Any) -> bool:
        """Tell whether a non-attribute field may be read; record the refusal when not."""
        if self.access(type_name, field_name) is Access.ALLOW:
            return True
        self.forbid(type_name, field_name, path)
        return False

    def forbid(self, type_name: str, field_name: str, path: Any) -> None:
        """Remember a forbidden read; the first one per field becomes the error."""
        self.forbidden.setdefault(f"{type_name}.{field_name}", path.as_list())

    def authorize(self, operation: str) -> None:
        """Refuse an operation the caller's role may not call."""
        if not self.services.authorizer.operation_allowed(self.principal.role, operation):
            raise GraphQLError(f"role {self.principal.role!r} may not call {operation}",
                               extensions={"code": "FORBIDDEN"})
