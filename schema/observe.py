"""Observability at the edge: request metrics, /metrics, and draining on shutdown.

- `RequestMetrics` (ASGI middleware): requests by route and status, latency by route; while the server
  drains (it received SIGTERM or SIGINT) it answers new GraphQL requests 503 SERVICE_UNAVAILABLE with
  Retry-After, so a load balancer's retry lands on another instance, while requests already running finish.
- `OperationMetrics` (strawberry extension): operations by root field and outcome, latency by root field.
- `metrics_endpoint`: the Prometheus text exposition of every worker, with the review queue size
  refreshed at most once per `QUEUE_REFRESH_S` from an indexed count.
"""
from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import Iterator

from graphql import FieldNode, OperationDefinitionNode
from sqlalchemy import func, select
from starlette.requests import Request
from starlette.responses import Response
from strawberry.extensions import SchemaExtension

from hub.metrics import (
    DRAINING, HTTP_REQUESTS, HTTP_SECONDS, OPERATION_SECONDS, OPERATIONS, REVIEW_QUEUE, exposition,
)
from hub.models import MatchCandidate
from hub.models.matching import PENDING

ROUTES = {"/graphql": "/graphql", "/graphql/": "/graphql", "/healthz": "/healthz", "/readyz": "/readyz",
          "/metrics": "/metrics"}
QUEUE_REFRESH_S = 15.0
RETRY_AFTER_S = 5
log = logging.getLogger("hub")
_UNAVAILABLE = json.dumps({"errors": [{
    "message": "the server is shutting down: retry the request (another instance will answer it)",
    "extensions": {"code": "SERVICE_UNAVAILABLE"}}]}).encode()


class Drain:
    """Whether this process is draining: set by SIGTERM/SIGINT, before uvicorn stops the server."""

    def __init__(self) -> None:
        self.active = False

    def start(self) -> None:
        """Refuse new GraphQL requests from now on; readiness answers 503."""
        if not self.active:
            self.active = True
            DRAINING.set(1)

    def watch_signals(self) -> None:
        """Chain onto the server's SIGTERM/SIGINT handlers (uvicorn's), so draining starts with its shutdown."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous = signal.getsignal(sig)
            if not callable(previous):
                continue

            def handler(signum, frame, previous=previous):
                self.start()
                previous(signum, frame)

            try:
                signal.signal(sig, handler)
            except ValueError:  # not the main thread (an embedding server): no signals to watch
                return


class RequestMetrics:
    """ASGI middleware: count and time HTTP requests; refuse new GraphQL requests while draining."""

    def __init__(self, app, drain: Drain) -> None:
        self.app, self.drain = app, drain

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = ROUTES.get(scope["path"], "other")
        status = 500
        start = time.perf_counter()

        async def sending(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if self.drain.active and route == "/graphql":
                await sending({"type": "http.response.start", "status": 503, "headers": [
                    (b"content-type", b"application/json"), (b"retry-after", str(RETRY_AFTER_S).encode()),
                    (b"connection", b"close")]})
                await sending({"type": "http.response.body", "body": _UNAVAILABLE})
                return
            await self.app(scope, receive, sending)
        finally:
            HTTP_REQUESTS.labels(route=route, status=str(status)).inc()
            HTTP_SECONDS.labels(route=route).observe(time.perf_counter() - start)


def _root_field(execution_context) -> str:
    """`query:customer`: the operation's type and first root field, if the schema has it (labels stay bounded)."""
    document = execution_context.graphql_document
    if document is None:
        return "invalid"
    wanted = execution_context.operation_name
    for node in document.definitions:
        if not isinstance(node, OperationDefinitionNode):
            continue
        if wanted is not None and (node.name is None or node.name.value != wanted):
            continue
        kind = node.operation.value
        root = execution_context.schema._schema.get_root_type(node.operation)  # noqa: SLF001
        for selection in node.selection_set.selections:
            if isinstance(selection, FieldNode):
                name = selection.name.value
                return f"{kind}:{name}" if root is not None and name in root.fields else "invalid"
        return kind
    return "invalid"


class OperationMetrics(SchemaExtension):
    """Count GraphQL operations by root field and outcome (OK, or the first error's code), and time them.

    Listed before the error masking, so it sees the codes callers see.
    """

    def on_operation(self) -> Iterator[None]:
        start = time.perf_counter()
        yield
        ctx = self.execution_context
        operation = _root_field(ctx)
        errors = ctx.result.errors if ctx.result is not None else None
        if errors:
            # the hub's errors carry a code; parse and validation errors (strawberry's) do not
            code = (errors[0].extensions or {}).get("code") or (
                "GRAPHQL_VALIDATION_FAILED" if operation == "invalid" else "GRAPHQL_ERROR")
        else:
            code = "OK"
        OPERATIONS.labels(operation=operation, code=str(code)).inc()
        OPERATION_SECONDS.labels(operation=operation).observe(time.perf_counter() - start)


class QueueGauge:
    """The review queue size, counted on the (status, id) index at most once per QUEUE_REFRESH_S."""

    def __init__(self, db) -> None:
        self.db = db
        self._at = float("-inf")
        self._lock = asyncio.Lock()

    async def refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._at < QUEUE_REFRESH_S:
                return
            self._at = time.monotonic()
            async with self.db.reader() as conn:
                pending = (await conn.execute(select(func.count()).select_from(MatchCandidate)
                                              .where(MatchCandidate.status == PENDING))).scalar_one()
            REVIEW_QUEUE.set(pending)


def metrics_endpoint(queue: QueueGauge):
    """The /metrics route: every worker's metrics; the queue size is skipped when the database is down."""

    async def metrics(_: Request) -> Response:
        try:
            await queue.refresh()
        except Exception:  # noqa: BLE001 - a down database must not hide the other metrics
            log.warning("/metrics: review queue size not refreshed (database unavailable)")
        body, content_type = exposition()
        return Response(body, media_type=content_type)

    return metrics
