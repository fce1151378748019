"""Loom's HTTP API under /api: the Migrator contract and the operator routes.

The only place that maps typed errors to HTTP status codes. One module per resource in `routes/`; the typed
dependencies (the service, who is calling, which role) in `deps.py`.
"""

from collections.abc import Callable

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from loom_backend.api.errors import install_error_handlers
from loom_backend.api.middleware import PREFIX, BodySizeLimit, RefuseNulInUrl
from loom_backend.api.routes import (
    auth,
    bulk,
    events,
    metrics,
    migrations,
    ops,
    registry,
    rollouts,
    runs,
    views,
    webhooks,
)
from loom_backend.service import LoomService

__all__ = ["create_api"]


def create_api(get_service: Callable[[], LoomService]) -> FastAPI:
    """Build the FastAPI app; `get_service` is resolved per request, so tests and bootstrap choose the service."""
    app = FastAPI(
        title="Loom",
        version="0.1.0",
        description="Control plane API for large, repeatable migrations: Migrators announce, operators drive Runs. "
        "Migrators authenticate with `Authorization: Bearer <Migrator token>`; operators with the `loom_session` "
        "cookie from POST /api/auth/login or `Authorization: Bearer <operator token>`.",
        docs_url=f"{PREFIX}/docs",
        openapi_url=f"{PREFIX}/openapi.json",
        redoc_url=None,
    )
    app.state.get_service = get_service
    install_error_handlers(app)
    for module in (ops, auth, registry, migrations, events, runs, rollouts, bulk, metrics, views, webhooks):
        app.include_router(module.router, prefix=PREFIX)
    app.add_api_route(f"{PREFIX}/{{path:path}}", _no_such_route, methods=ALL_METHODS, include_in_schema=False)
    app.add_middleware(BodySizeLimit)
    app.add_middleware(RefuseNulInUrl)
    return app


ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


async def _no_such_route(request: Request) -> None:
    """Last of the /api routes: an unknown one answers JSON like every other error, not the board's HTML page.

    Inside the Reflex app every other path goes on to the pages, so /api must end here.
    """
    allowed = [method for method in ALL_METHODS if _routed(request, method)]
    if allowed:
        raise StarletteHTTPException(405, f"{request.method} is not allowed here", {"Allow": ", ".join(allowed)})
    raise StarletteHTTPException(404, f"No such route: {request.method} {request.url.path} (see {PREFIX}/docs)")


def _routed(request: Request, method: str) -> bool:
    """Whether an /api route other than this last one takes the request's path with `method` (the pages that
    Reflex mounts after the API take every path and method, so they do not count)."""
    scope = {**request.scope, "method": method}
    return any(
        not isinstance(route, Mount)
        and getattr(route, "endpoint", None) is not _no_such_route
        and route.matches(scope)[0] == Match.FULL
        for route in request.app.router.routes
    )
