"""The Starlette application: /graphql behind bearer-token authentication, /healthz, /readyz."""
from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult

from authz import Authorizer
from hub.config import Settings, get_settings
from hub.db import Database, Reads
from hub.ingest.matcher import load_scorer
from hub.access.tokens import Principal, authenticate
from hub.events import publisher_from, relay, retention
from hub.events.payload import View
from schema.build import build_schema
from schema.context import Context, FieldForbidden, Services
from schema.loaders import Loaders


def _unauthenticated(message: str) -> Response:
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}]},
                        status_code=401, headers={"WWW-Authenticate": 'Bearer realm="hub"'})


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

    Subscriptions run over graphql-transport-ws; the token comes in the connection_init payload
    ({"Authorization": "Bearer <token>"}) or the handshake's Authorization header, and is checked there.
    """

    def __init__(self, services: Services) -> None:
        super().__init__(build_schema(services.settings), graphql_ide="graphiql",
                         subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
                         max_subscriptions_per_connection=MAX_SUBSCRIPTIONS)
        self.services = services

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "websocket":
            await super().__call__(scope, receive, send)
            return
        if scope["type"] != "http":
            await PlainTextResponse("not supported", status_code=400)(scope, receive, send)
            return
        request = Request(scope, receive)
        if request.method == "GET" and "query" not in request.query_params:
            # the GraphiQL page holds no data; the token is set in its headers pane
            await (await self.render_graphql_ide(request))(scope, receive, send)
            return
        reads = Reads(self.services.db)
        try:
            if self.services.policy_check_due():
                await self.services.refresh_policy(reads)
            principal = await self._principal(request, reads)
            if principal is None:
                await _unauthenticated("a valid bearer token is required: Authorization: Bearer <token>")(
                    scope, receive, send)
                return
            state = scope.setdefault("state", {})
            state["principal"], state["reads"] = principal, reads
            await super().__call__(scope, receive, send)
        finally:
            await reads.close()

    async def _principal(self, request: Request, reads: Reads) -> Principal | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return await authenticate(reads=reads, token=token.strip())

    async def process_result(self, request: Any, result: ExecutionResult) -> GraphQLHTTPResponse:
        if result.errors:
            result.errors = _one_per_forbidden_field(result.errors)
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
        reads = request.state.reads
        return Context(request=request, response=response, services=self.services,
                       principal=request.state.principal, reads=reads, loaders=Loaders(reads))


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
    return Services(db=db or Database(settings.database_url, echo=settings.sql_echo), settings=settings,
                    authorizer=authorizer or Authorizer(), scorer=scorer)


def create_app(services: Services | None = None) -> Starlette:
    """Build the ASGI application."""
    services = services or build_services()

    async def healthz(_: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(_: Request) -> Response:
        if await services.db.ping():
            return PlainTextResponse("ready")
        return PlainTextResponse("database unavailable", status_code=503)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette):
        reads = Reads(services.db)
        try:
            await services.refresh_policy(reads)  # the stored policy, before the first request
        finally:
            await reads.close()
        if services.scorer is None:
            services.scorer = await load_scorer(services.db, services.settings.match_model)
        stop, publishing = asyncio.Event(), None
        if services.settings.publish:
            publishing = asyncio.create_task(run_publisher(services, stop))
        yield
        if publishing is not None:
            stop.set()
            await publishing
        await services.db.dispose()

    graphql = HubGraphQL(services)
    # "/graphql/" too: clients that join a base URL and an empty path (httpx) add the slash
    app = Starlette(routes=[Route("/graphql", graphql, methods=["GET", "POST"]), WebSocketRoute("/graphql", graphql),
                            Route("/graphql/", graphql, methods=["GET", "POST"]), Route("/healthz", healthz),
                            Route("/readyz", readyz)], lifespan=lifespan)
    app.state.services = services
    return app


async def run_publisher(services: Services, stop: asyncio.Event) -> int:
    """Relay the change stream to the configured broker as the configured role sees it, until stopped."""
    settings = services.settings
    role = settings.publish_role

    def view() -> View:
        return View(services.authorizer, role)

    return await relay(services.db, publisher_from(settings), view, poll=settings.events_poll,
                       retention=retention(settings), stop=stop)
