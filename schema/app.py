"""The Starlette application: /graphql behind bearer-token authentication, /healthz, /readyz."""
from __future__ import annotations

import contextlib
import pathlib
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult

from authz import Authorizer
from hub.config import Settings, get_settings
from hub.db import Database, Reads
from hub.ingest.matcher import load_scorer
from hub.access.tokens import Principal, authenticate
from hub.metrics import worker_stopped
from schema.build import build_schema
from schema.context import Context, FieldForbidden, Services
from schema.loaders import Loaders
from schema.observe import Drain, QueueGauge, RequestMetrics, metrics_endpoint


def _unauthenticated(message: str) -> Response:
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": "UNAUTHENTICATED"}}]},
                        status_code=401, headers={"WWW-Authenticate": 'Bearer realm="hub"'})


def _forbidden(message: str) -> Response:
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": "FORBIDDEN"}}]}, status_code=403)


# the hub's GraphiQL page (strawberry's, asking for the token first and saying so when its CDN is unreachable)
GRAPHIQL_HTML = (pathlib.Path(__file__).parent / "graphiql.html").read_text(encoding="utf-8")


class HubGraphQL(GraphQL):
    """Strawberry's ASGI view with the hub's context; callers without a valid token get HTTP 401."""

    def __init__(self, services: Services) -> None:
        super().__init__(build_schema(services.settings), graphql_ide="graphiql")
        self.services = services

    @property
    def graphql_ide_html(self) -> str:
        return GRAPHIQL_HTML

    async def __call__(self, scope, receive, send) -> None:
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
            if principal.system is None and self.services.authorizer.system_bound(principal.role):
                # a token minted before its role became bound (g, feed, source added later): it would reach
                # every system's records
                await _forbidden(f"role {principal.role!r} registers records for one source system, but this "
                                 "token names none: mint one with --system")(scope, receive, send)
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

    async def get_context(self, request: Any, response: Any) -> Context:
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
    return Services(db=db or Database.for_server(settings), settings=settings,
                    authorizer=authorizer or Authorizer(), scorer=scorer)


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
        drain.watch_signals()
        yield
        await services.db.dispose()
        worker_stopped()

    graphql = HubGraphQL(services)
    # "/graphql/" too: clients that join a base URL and an empty path (httpx) add the slash
    app = Starlette(routes=[Route("/graphql", graphql, methods=["GET", "POST"]),
                            Route("/graphql/", graphql, methods=["GET", "POST"]), Route("/healthz", healthz),
                            Route("/readyz", readyz)], lifespan=lifespan)
    if services.settings.metrics:
        app.add_route("/metrics", metrics_endpoint(QueueGauge(services.db)), methods=["GET"])
    app.add_middleware(RequestMetrics, drain=drain)
    app.state.services, app.state.drain = services, drain
    return app
