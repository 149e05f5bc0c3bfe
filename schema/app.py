"""The Starlette application: /graphql behind bearer-token authentication, /healthz, /readyz."""
from __future__ import annotations

import asyncio
import contextlib
import pathlib
import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

from cross_web import HTTPException

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Message, Receive
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import SchemaExtension
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult

from authz import Authorizer
from console import console_routes
from hub.config import Settings, get_settings
from hub.db import Database, Reads, unavailable
from hub.logs import configure_logging, safe_traceback
from hub.ingest.matcher import load_scorer
from hub.access.tokens import Principal, authenticate
from hub.events import publisher_from, relay, retention
from hub.events.payload import View
from hub.privacy.sealing import configure as configure_sealing, verify_keys
from hub.privacy.audit import ReadAuditLog
from hub.metrics import worker_stopped
from schema.build import build_schema
from schema.context import Context, FieldForbidden, Services
from schema.errors import UNAVAILABLE_MESSAGE
from schema.loaders import Loaders
from schema.observe import Drain, QueueGauge, RequestMetrics, metrics_endpoint


log = logging.getLogger("hub")
request_log = logging.getLogger("hub.request")
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_CODES = {400: "BAD_REQUEST", 401: "UNAUTHENTICATED", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
          413: "PAYLOAD_TOO_LARGE", 415: "BAD_REQUEST", 500: "INTERNAL_SERVER_ERROR", 503: "SERVICE_UNAVAILABLE"}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    """A GraphQL-style JSON error for a request refused before execution."""
    code = _CODES.get(status, "BAD_REQUEST")
    return JSONResponse({"data": None, "errors": [{"message": message, "extensions": {"code": code}}]},
                        status_code=status, headers=headers)


def _unauthenticated(message: str) -> Response:
    return error_response(401, message, headers={"WWW-Authenticate": 'Bearer realm="hub"'})


def _note_refusal(scope, status: int) -> None:
    """Put the code of a request refused before execution into its log entry."""
    scope["state"]["log"]["errors"] = _CODES.get(status, "BAD_REQUEST")


class BodyTooLarge(Exception):
    """The request body went past HUB_MAX_BODY_BYTES while it was being read."""


def _limited(receive: Receive, limit: int) -> Receive:
    """`receive`, refusing a body longer than `limit` bytes as soon as it gets there (nothing more is read)."""
    seen = 0

    async def limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge
        return message

    return limited


def _operation_label(document: Any, operation_name: str | None) -> str | None:
    """`query:customers`, `mutation:Load`: the operation's type and name, else its root fields (never values)."""
    from graphql import OperationDefinitionNode
    from graphql.utilities import get_operation_ast

    operation = get_operation_ast(document, operation_name) if document is not None else None
    if not isinstance(operation, OperationDefinitionNode):
        return None
    name = operation.name.value if operation.name else ",".join(
        dict.fromkeys(getattr(s, "name", None) and s.name.value or "..." for s in operation.selection_set.selections))
    return f"{operation.operation.value}:{name}"[:120]


class OperationLabel(SchemaExtension):
    """Put the operation's label into the request's log entry."""

    def on_execute(self) -> Iterator[None]:
        ctx = self.execution_context
        entry = getattr(ctx.context, "log", None)
        if entry is not None:
            entry["op"] = _operation_label(ctx.graphql_document, ctx.operation_name)
        yield


def _forbidden(message: str) -> Response:
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": "FORBIDDEN"}}]}, status_code=403)


# the hub's GraphiQL page (strawberry's, asking for the token first and saying so when its CDN is unreachable)
GRAPHIQL_HTML = (pathlib.Path(__file__).parent / "graphiql.html").read_text(encoding="utf-8")


MAX_SUBSCRIPTIONS = 10  # per websocket: each one polls the database while it runs
NOBODY = Principal("anonymous", "")  # a websocket before its connection_init: no role, nothing allowed


def _bearer(value: Any) -> str | None:
    """The token of "Bearer <token>" (or of a bare token, as some websocket clients send it)."""
    if not isinstance(value, str):
        return None
    scheme, _, token = value.strip().partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else scheme
    return token or None


class HubGraphQL(GraphQL):
    """Strawberry's ASGI view with the hub's context; callers without a valid token get HTTP 401.

    Every request outcome is JSON: a body that is not UTF-8 or JSON is 400, one over the size limit 413, a
    database outage 503 with Retry-After; one log line per request (hub.request). Subscriptions run over
    graphql-transport-ws; the token comes in the connection_init payload ({"Authorization": "Bearer <token>"})
    or the handshake's Authorization header, and is checked there.
    """

    def __init__(self, services: Services) -> None:
        super().__init__(build_schema(services.settings, extra_extensions=[OperationLabel]), graphql_ide="graphiql",
                         subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
                         max_subscriptions_per_connection=MAX_SUBSCRIPTIONS)
        self.services = services

    @property
    def graphql_ide_html(self) -> str:
        return GRAPHIQL_HTML

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "websocket":
            await super().__call__(scope, receive, send)
            return
        if scope["type"] != "http":
            await PlainTextResponse("not supported", status_code=400)(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]
        entry: dict[str, Any] = {"request_id": request_id, "op": None, "role": None, "status": None, "errors": None}
        scope.setdefault("state", {})["log"] = entry

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self._serve(scope, receive, sending)
        except Exception as e:  # noqa: BLE001 - whatever escaped becomes a JSON error, never a bare 500
            if entry["status"] is not None:
                raise
            if unavailable(e):
                log.warning("database unavailable during a request")
                response = error_response(503, UNAVAILABLE_MESSAGE, {"Retry-After": str(self.retry_after)})
            else:
                log.error("unexpected error in the HTTP layer: %s\n%s", type(e).__name__, safe_traceback(e))
                response = error_response(500, "Internal server error.")
            _note_refusal(scope, response.status_code)
            await response(scope, receive, sending)
        finally:
            if scope.get("method") != "GET" or entry["op"] or entry["status"] != 200:  # not the GraphiQL page
                fields = {**entry, "ms": round((time.perf_counter() - started) * 1000, 1)}
                fields["errors"] = fields.pop("errors")  # last, after the duration
                request_log.info("request", extra={"fields": fields})

    @property
    def retry_after(self) -> int:
        return self.services.settings.retry_after

    async def _serve(self, scope, receive, send) -> None:
        request = Request(scope, receive)
        if request.method == "GET" and "query" not in request.query_params:
            # the GraphiQL page holds no data; the token is set in its headers pane
            await (await self.render_graphql_ide(request))(scope, receive, send)
            return
        limit = self.services.settings.max_body_bytes
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            _note_refusal(scope, 413)
            await error_response(413, f"the request body is larger than {limit} bytes")(scope, receive, send)
            return
        reads = Reads(self.services.db)
        try:
            try:
                if self.services.policy_check_due():
                    await self.services.refresh_policy(reads)
                principal = await self._principal(request, reads)
            except Exception as e:
                if not unavailable(e):
                    raise
                log.warning("database unavailable: token lookup failed (%s)", type(e).__name__)
                _note_refusal(scope, 503)
                await error_response(503, UNAVAILABLE_MESSAGE, {"Retry-After": str(self.retry_after)})(
                    scope, receive, send)
                return
            if principal is None:
                _note_refusal(scope, 401)
                await _unauthenticated("a valid bearer token is required: Authorization: Bearer <token>")(
                    scope, receive, send)
                return
            if principal.system is None and self.services.authorizer.system_bound(principal.role):
                # a token minted before its role became bound (g, feed, source added later): it would reach
                # every system's records
                await _forbidden(f"role {principal.role!r} registers records for one source system, but this "
                                 "token names none: mint one with --system")(scope, receive, send)
                return
            state = scope["state"]
            state["principal"], state["reads"] = principal, reads
            state["log"]["role"] = principal.role
            # sensitive values served by this request, handed to the read audit when it ends (off the request path)
            state["request_id"] = state["log"]["request_id"]
            state["sensitive_reads"] = sensitive = []
            try:
                try:
                    response = await self.run(Request(scope, _limited(receive, limit)))
                except BodyTooLarge:
                    response = error_response(413, f"the request body is larger than {limit} bytes")
                except HTTPException as e:
                    response = error_response(e.status_code, e.reason)
                if response.status_code >= 400 and not scope["state"]["log"].get("errors"):
                    _note_refusal(scope, response.status_code)
                await response(scope, receive, send)
            finally:
                if sensitive and self.services.audit is not None:
                    self.services.audit.record(sensitive, subject=principal.subject, role=principal.role,
                                               request_id=state["request_id"])
        finally:
            try:
                await reads.close()
            except Exception as e:  # noqa: BLE001 - a connection lost with the database: the pool drops it
                log.warning("closing a read connection failed (%s)", type(e).__name__)

    async def _principal(self, request: Request, reads: Reads) -> Principal | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return await authenticate(reads=reads, token=token.strip())

    def decode_json(self, data: str | bytes) -> object:
        """The request's JSON: UTF-8 only, an object (or a batch list), nesting within Python's reach."""
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError:
                raise HTTPException(400, "the request body is not UTF-8") from None
        try:
            value = json.loads(data)
        except RecursionError:
            raise HTTPException(400, "the request body is nested too deeply") from None
        except ValueError:
            raise HTTPException(400, "the request body is not JSON") from None
        if not isinstance(value, dict | list):
            raise HTTPException(400, "the request body must be a JSON object with a query")
        return value

    async def process_result(self, request: Any, result: ExecutionResult) -> GraphQLHTTPResponse:
        if result.errors:
            result.errors = _one_per_forbidden_field(result.errors)
            codes = sorted({(e.extensions or {}).get("code", "GRAPHQL_VALIDATION_FAILED") for e in result.errors})
            request.state.log["errors"] = ",".join(codes)
            if "SERVICE_UNAVAILABLE" in codes:
                sub = request.state.sub_response
                sub.status_code = 503
                sub.headers["Retry-After"] = str(self.retry_after)
        return await super().process_result(request, result)

    async def on_ws_connect(self, context: Context) -> None:
        """Accept a websocket only with a live token; its subscriptions re-check it while they run."""
        params = context.connection_params or {}
        token = _bearer(params.get("Authorization") or params.get("authorization") or params.get("token")) \
            or _bearer(context.request.headers.get("authorization"))
        reads = Reads(self.services.db)
        try:
            if self.services.policy_check_due():
                await self.services.refresh_policy(reads)
            principal = await authenticate(reads=reads, token=token) if token else None
        finally:
            await reads.close()
        if principal is None:
            raise ConnectionRejectionError({"message": "a valid bearer token is required"})
        context.principal, context.token = principal, token
        return None

    async def get_context(self, request: Any, response: Any) -> Context:
        if isinstance(request, WebSocket):
            # long-lived: no request-scoped connection is held; subscriptions open their own per read
            reads = Reads(self.services.db)
            return Context(request=request, response=response, services=self.services, principal=NOBODY,
                           reads=reads, loaders=Loaders(reads))
        reads, principal = request.state.reads, request.state.principal
        request.state.sub_response = response
        purposes = self.services.authorizer.purposes(principal.role)
        return Context(request=request, response=response, services=self.services, principal=principal,
                       reads=reads, loaders=Loaders(reads, purposes), purposes=purposes, log=request.state.log,
                       request_id=request.state.request_id, sensitive_reads=request.state.sensitive_reads)


def _one_per_forbidden_field(errors: list) -> list:
    """Keep the first error of each non-null field refused on every item of a list (FieldForbidden)."""
    seen: set[str] = set()
    kept = []
    for error in errors:
        if isinstance(error.original_error, FieldForbidden):
            if error.message in seen:
                continue
            seen.add(error.message)
        kept.append(error)
    return kept


def build_services(settings: Settings | None = None, *, db: Database | None = None,
                   authorizer: Authorizer | None = None, scorer: Any = None) -> Services:
    """Wire the hub's long-lived parts from settings."""
    settings = settings or get_settings()
    configure_sealing(settings)  # encryption at rest: the process's keys, before any read or write
    db = db or Database.for_server(settings)
    audit = ReadAuditLog(db, flush_ms=settings.audit_flush_ms, batch=settings.audit_batch,
                         enabled=settings.read_audit)
    return Services(db=db, settings=settings, authorizer=authorizer or Authorizer(), scorer=scorer, audit=audit)


def create_app(services: Services | None = None) -> Starlette:
    """Build the ASGI application."""
    services = services or build_services()
    drain = Drain()

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(_: Request) -> Response:
        if drain.active:
            return PlainTextResponse("draining: shutting down", status_code=503)
        if await services.db.ping():
            return PlainTextResponse("ready")
        return PlainTextResponse("database unavailable", status_code=503,
                                 headers={"Retry-After": str(services.settings.retry_after)})

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette):
        await verify_keys(services.db)  # keys that cannot open the stored values stop the start, clearly
        reads = Reads(services.db)
        try:
            await services.refresh_policy(reads)  # the stored policy, before the first request
        finally:
            await reads.close()
        if services.scorer is None:
            services.scorer = await load_scorer(services.db, services.settings.match_model)
        drain.watch_signals()
        stop, publishing = asyncio.Event(), None
        if services.settings.publish:
            publishing = asyncio.create_task(run_publisher(services, stop))
        yield
        if publishing is not None:
            stop.set()
            await publishing
        if services.audit is not None:
            await services.audit.close()  # what is still queued is written before the pool closes
        await services.db.dispose()
        worker_stopped()

    graphql = HubGraphQL(services)
    # "/graphql/" too: clients that join a base URL and an empty path (httpx) add the slash
    app = Starlette(routes=[Route("/graphql", graphql, methods=["GET", "POST"]), WebSocketRoute("/graphql", graphql),
                            Route("/graphql/", graphql, methods=["GET", "POST"]), Route("/healthz", healthz),
                            Route("/readyz", readyz), *console_routes("/console")], lifespan=lifespan)
    app.state.services = services
    if services.settings.metrics:
        app.add_route("/metrics", metrics_endpoint(QueueGauge(services.db)), methods=["GET"])
    app.add_middleware(RequestMetrics, drain=drain)
    app.state.drain = drain
    return app


def serve_app() -> Starlette:
    """The application as `hub serve` runs it, in each worker: the hub's logging, then the app."""
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(build_services(settings))


async def run_publisher(services: Services, stop: asyncio.Event) -> int:
    """Relay the change stream to the configured broker as the configured role sees it, until stopped."""
    settings = services.settings
    role = settings.publish_role

    def view() -> View:
        return View(services.authorizer, role)

    return await relay(services.db, publisher_from(settings), view, poll=settings.events_poll,
                       retention=retention(settings), stop=stop)
