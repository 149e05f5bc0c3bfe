"""Turn the hub's refusals into GraphQL errors with `extensions.code`; hide everything unexpected."""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from hub.db import unavailable
from hub.errors import HubError

log = logging.getLogger("hub")
UNAVAILABLE_MESSAGE = "the database is unavailable; retry later"


def operation(fn: Callable) -> Callable:
    """Wrap a root resolver: check the caller may call it, and report HubErrors with their code."""
    name = None

    @functools.wraps(fn)
    async def wrapper(*args, **kwargs):
        nonlocal name
        info = kwargs["info"]
        name = name or f"{info.path.typename}.{info.field_name}"
        info.context.authorize(name)
        try:
            return await fn(*args, **kwargs)
        except HubError as e:
            raise GraphQLError(str(e), extensions={"code": e.code}) from None

    return wrapper


def unexpected(error: GraphQLError) -> bool:
    """Tell whether an error is not the caller's: an exception other than a GraphQLError (logged by HubSchema)."""
    return error.original_error is not None and not isinstance(error.original_error, GraphQLError)


def unavailable_error(**kwargs) -> GraphQLError:
    """The error every caller gets while the database cannot be reached (HTTP 503 with Retry-After)."""
    return GraphQLError(UNAVAILABLE_MESSAGE, extensions={"code": "SERVICE_UNAVAILABLE"}, **kwargs)


class HubMaskErrors(MaskErrors):
    """Mask unexpected exceptions as INTERNAL_SERVER_ERROR, or SERVICE_UNAVAILABLE when the database is out;
    keep the caller's own errors readable."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=unexpected, error_message="Internal server error.")

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        if unavailable(error.original_error):
            return unavailable_error(nodes=error.nodes, source=error.source, positions=error.positions,
                                     path=error.path)
        masked = super().anonymise_error(error)
        masked.extensions = {"code": "INTERNAL_SERVER_ERROR"}
        return masked
