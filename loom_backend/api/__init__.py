"""Loom's HTTP API under /api: the Migrator contract and the operator routes.

The only place that maps typed errors to HTTP status codes. One module per resource in `routes/`; the typed
dependencies (the service, who is calling, which role) in `deps.py`.
"""

from collections.abc import Callable

from fastapi import FastAPI

from loom_backend.api.errors import install_error_handlers
from loom_backend.api.middleware import PREFIX, BodySizeLimit
from loom_backend.api.routes import auth, bulk, metrics, migrations, ops, registry, rollouts, runs
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
    for module in (ops, auth, registry, migrations, runs, rollouts, bulk, metrics):
        app.include_router(module.router, prefix=PREFIX)
    app.add_middleware(BodySizeLimit)
    return app
