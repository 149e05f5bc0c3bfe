"""Turn the hub's refusals into GraphQL errors with `extensions.code`; hide everything unexpected."""
from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from typing import Any

import strawberry

from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from hub.db import unavailable
from hub.errors import HubError
from hub.models.types import SealingNotConfigured
from hub.privacy.keys import KeyMaterialError
from hub.validation import check_text, utc

# input types whose values the hub checks one by one (registration, search): a bad value there is a FieldError
# of its record, or a refusal naming the attribute, rather than a refusal of the whole argument here
PER_RECORD: set[type] = set()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def check_argument(name: str, value: Any) -> None:
    """Refuse (BAD_USER_INPUT) a client's string or timestamp that breaks the limits of hub.validation.

    Walks lists and input objects, so an argument or input field added later is covered too (strings
    without a limit of their own get the default one).
    """
    if value is None or value is strawberry.UNSET:
        return
    if isinstance(value, str):
        check_text(value, name)
    elif isinstance(value, dt.datetime):
        utc(value, name)
    elif isinstance(value, list | tuple):
        for item in value:
            check_argument(name, item)
    elif getattr(definition := getattr(type(value), "__strawberry_definition__", None), "is_input", False) \
            and type(value) not in PER_RECORD:
        for f in definition.fields:
            check_argument(f.graphql_name or _camel(f.python_name), getattr(value, f.python_name, None))

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
            for argument, value in kwargs.items():
                if argument != "info":
                    check_argument(_camel(argument), value)
            return await fn(*args, **kwargs)
        except HubError as e:
            raise GraphQLError(str(e), extensions={"code": e.code}) from None

    return wrapper


# stored values the configured keys cannot open: an operator's problem, reported as such (never the value)
KEY_ERRORS = (KeyMaterialError, SealingNotConfigured)
KEYS_UNAVAILABLE = ("stored personal data cannot be decrypted with the keys this server holds; "
                    "an operator must configure the key that sealed it (see the server log)")


def unexpected(error: GraphQLError) -> bool:
    """Tell whether an error is not the caller's: an exception other than a GraphQLError (logged by HubSchema)."""
    return error.original_error is not None and not isinstance(error.original_error, GraphQLError)


def unavailable_error(**kwargs) -> GraphQLError:
    """The error every caller gets while the database cannot be reached (HTTP 503 with Retry-After)."""
    return GraphQLError(UNAVAILABLE_MESSAGE, extensions={"code": "SERVICE_UNAVAILABLE"}, **kwargs)


def _code_of(error: GraphQLError) -> str:
    """The code of an error graphql-core raised itself (a document that does not parse never reaches the
    operation's extensions: strawberry answers it before them)."""
    if error.message.startswith("Variable '$"):
        return "BAD_USER_INPUT"            # a variable its scalar cannot read
    if error.path is not None:
        return "INTERNAL_SERVER_ERROR"     # during execution, e.g. a resolver gave null for a non-null field
    return "GRAPHQL_VALIDATION_FAILED"


class HubMaskErrors(MaskErrors):
    """Mask unexpected exceptions as INTERNAL_SERVER_ERROR, or SERVICE_UNAVAILABLE when the database is out;
    keep the caller's own errors readable."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=unexpected, error_message="Internal server error.")

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        """Mask the unexpected; give every error the caller caused a code, also those graphql-core raises itself
        (a variable its scalar cannot read: BAD_USER_INPUT; a document that does not validate)."""
        processed = super()._process_errors(errors)
        for error in processed:
            if not (error.extensions or {}).get("code"):
                error.extensions = {**(error.extensions or {}), "code": _code_of(error)}
        return processed

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        if isinstance(error.original_error, KEY_ERRORS):
            return GraphQLError(KEYS_UNAVAILABLE, nodes=error.nodes, path=error.path,
                                extensions={"code": "KEYS_UNAVAILABLE"})
        if unavailable(error.original_error):
            return unavailable_error(nodes=error.nodes, source=error.source, positions=error.positions,
                                     path=error.path)
        masked = super().anonymise_error(error)
        masked.extensions = {"code": "INTERNAL_SERVER_ERROR"}
        return masked
