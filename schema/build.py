"""Assemble the strawberry schema with its limits, caches and error handling."""
from __future__ import annotations

import logging
from collections.abc import Iterator

import strawberry
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules, MaxAliasesLimiter, MaxTokensLimiter, ParserCache, QueryDepthLimiter, SchemaExtension,
    ValidationCache,
)

from hub.config import Settings, get_settings
from schema.observe import OperationMetrics
from strawberry.tools import merge_types

from hub.db import unavailable
from hub.logs import safe_traceback
from schema.cost import QueryCostLimiter
from schema.errors import HubMaskErrors, unexpected
from schema.events import POSITION, EventsQuery, Position, Subscription
from schema.match_models import MatchModelQuery
from schema.mutations import Mutation
from schema.erasure import PrivacyMutation, PrivacyQuery
from schema.quality import QualityQuery
from schema.queries import Query
from schema.types import Customer, SourceRecord


class ForbiddenFields(SchemaExtension):
    """Report each forbidden field once, at its first path, instead of once per list item."""

    def on_operation(self) -> Iterator[None]:
        yield
        ctx = self.execution_context.context
        result = self.execution_context.result
        forbidden = getattr(ctx, "forbidden", None)
        if not forbidden or result is None:
            return
        errors = list(result.errors or [])
        for name, path in forbidden.items():
            errors.append(GraphQLError(f"not allowed to read {name}", path=path, extensions={"code": "FORBIDDEN"}))
        result.errors = errors


log = logging.getLogger("hub")


class HubSchema(strawberry.Schema):
    """The schema, logging as the hub does: a caller's errors are not logged (the request line counts their
    codes); a database outage is one warning line; anything else is logged with its redacted traceback."""

    def process_errors(self, errors: list[GraphQLError], execution_context=None) -> None:
        outage = False
        for error in errors:
            original = error.original_error
            if not unexpected(error):
                continue
            if unavailable(original):
                outage = True
                continue
            log.error("unexpected error at %s: %s\n%s", ".".join(map(str, error.path or [])) or "-",
                      type(original).__name__, safe_traceback(original))
        if outage:
            log.warning("database unavailable during a request")


def build_schema(settings: Settings | None = None, extra_extensions: list | None = None) -> strawberry.Schema:
    """Build the hub's schema with the configured limits."""
    s = settings or get_settings()
    # the limiters' rule classes are built once: new classes per request would defeat ValidationCache,
    # whose key includes the rules
    rules = [*QueryDepthLimiter(max_depth=s.max_query_depth).validation_rules,
             *MaxAliasesLimiter(max_alias_count=s.max_aliases).validation_rules]
    return HubSchema(
        query=merge_types("Query", (Query, PrivacyQuery, EventsQuery, QualityQuery, MatchModelQuery)),
        mutation=merge_types("Mutation", (Mutation, PrivacyMutation)),
        subscription=Subscription,
        config=StrawberryConfig(scalar_map={Position: POSITION}),
        types=[Customer, SourceRecord],
        extensions=[
            lambda: ParserCache(maxsize=512),
            lambda: ValidationCache(maxsize=512),
            lambda: AddValidationRules(rules),
            lambda: MaxTokensLimiter(max_token_count=s.max_query_tokens),
            lambda: QueryCostLimiter(max_cost=s.max_query_cost),
            OperationMetrics,
            HubMaskErrors,
            ForbiddenFields,
            *(extra_extensions or []),
        ],
    )
