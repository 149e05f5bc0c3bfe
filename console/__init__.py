"""The steward console: static pages (HTML, CSS, plain JavaScript) served by the hub at /console.

Everything the page needs comes from this folder: no asset from outside the hub, no front-end build.
The page signs in with a hub token and speaks only the public GraphQL API, so the server decides what
each role sees. This package imports nothing of the hub: `console_app()` is a Starlette app that
`schema/app.py` mounts.
"""
from __future__ import annotations

import pathlib

from starlette.responses import RedirectResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

STATIC = pathlib.Path(__file__).parent / "static"

# the page may load and call nothing but the hub itself; no inline script, no frames, no form posts elsewhere
HEADERS = {
    "content-security-policy": ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-cache",
}


class _SecurityHeaders:
    """Add the console's headers to every response it serves."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [
                    (k.encode(), v.encode()) for k, v in HEADERS.items() if k.encode() not in present]
            await send(message)

        await self.app(scope, receive, with_headers)


def console_app() -> ASGIApp:
    """The console's pages under the mount point (index.html at its root)."""
    return _SecurityHeaders(StaticFiles(directory=STATIC, html=True))


def console_routes(prefix: str = "/console") -> list:
    """Routes serving the console at `prefix` (and `prefix` without its slash redirecting to it)."""

    async def to_slash(_request) -> RedirectResponse:
        return RedirectResponse(prefix + "/", status_code=307)

    return [Route(prefix, to_slash), Mount(prefix, app=console_app(), name="console")]


__all__ = ["console_app", "console_routes"]
