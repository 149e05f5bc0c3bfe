"""Turn the hub's refusals into GraphQL errors with `extensions.code`; hide everything unexpected."""
from __future__ import annotations

import functools
import logging
from collections.abc import Callable

from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from hub.errors import HubError
from hub.models.types import SealingNotConfigured
from hub.privacy.keys import KeyMaterialError

log = logging.getLogger("hub")


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


# stored values the configured keys cannot open: an operator's problem, reported as such (never the value)
KEY_ERRORS = (KeyMaterialError, SealingNotConfigured)
KEYS_UNAVAILABLE = ("stored personal data cannot be decrypted with the keys this server holds; "
                    "an operator must configure the key that sealed it (see the server log)")


def _unexpected(error: GraphQLError) -> bool:
    if isinstance(error.original_error, KEY_ERRORS):
        log.error("key material: %s (at %s)", error.original_error, error.path)
        return True
    if error.original_error is not None and not isinstance(error.original_error, GraphQLError):
        log.error("unexpected error at %s", error.path, exc_info=error.original_error)
        return True
    return False


class HubMaskErrors(MaskErrors):
    """Mask unexpected exceptions as INTERNAL_SERVER_ERROR; keep the caller's own errors readable."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=_unexpected, error_message="Internal server error.")

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        if isinstance(error.original_error, KEY_ERRORS):
            return GraphQLError(KEYS_UNAVAILABLE, nodes=error.nodes, path=error.path,
                                extensions={"code": "KEYS_UNAVAILABLE"})
        masked = super().anonymise_error(error)
        masked.extensions = {"code": "INTERNAL_SERVER_ERROR"}
        return masked
