"""Assemble the strawberry schema with its limits, caches and error handling."""
from __future__ import annotations

from collections.abc import Iterator

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    AddValidationRules, MaxAliasesLimiter, MaxTokensLimiter, ParserCache, QueryDepthLimiter, SchemaExtension,
    ValidationCache,
)

from hub.config import Settings, get_settings
from schema.errors import HubMaskErrors
from schema.observe import OperationMetrics
from strawberry.tools import merge_types

from schema.mutations import Mutation
from schema.privacy import PrivacyMutation, PrivacyQuery
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


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    """Build the hub's schema with the configured limits."""
    s = settings or get_settings()
    # the limiters' rule classes are built once: new classes per request would defeat ValidationCache,
    # whose key includes the rules
    rules = [*QueryDepthLimiter(max_depth=s.max_query_depth).validation_rules,
             *MaxAliasesLimiter(max_alias_count=s.max_aliases).validation_rules]
    return strawberry.Schema(
        query=merge_types("Query", (Query, PrivacyQuery)),
        mutation=merge_types("Mutation", (Mutation, PrivacyMutation)),
        types=[Customer, SourceRecord],
        extensions=[
            lambda: ParserCache(maxsize=512),
            lambda: ValidationCache(maxsize=512),
            lambda: AddValidationRules(rules),
            lambda: MaxTokensLimiter(max_token_count=s.max_query_tokens),
            OperationMetrics,
            HubMaskErrors,
            ForbiddenFields,
        ],
    )
