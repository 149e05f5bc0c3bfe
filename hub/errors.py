"""Errors a caller can cause; the GraphQL layer turns them into errors with `extensions.code`."""
from __future__ import annotations


class HubError(Exception):
    """A refusal the caller can act on."""

    code = "BAD_USER_INPUT"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code


class BadInput(HubError):
    code = "BAD_USER_INPUT"


class NotFound(HubError):
    code = "NOT_FOUND"


class Forbidden(HubError):
    code = "FORBIDDEN"


class Conflict(HubError):
    code = "CONFLICT"
