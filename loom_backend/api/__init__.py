"""Loom's HTTP API under /api: the Migrator contract and the operator routes.

The only place that maps typed errors to HTTP status codes. One module per resource in `routes/`; the typed
dependencies (the service, who is calling, which role) in `deps.py`.
"""

from collections.abc import Callable

from fastapi import FastAPI

from loom_backend.api.deps import SESSION_COOKIE
from loom_backend.api.errors import install_error_handlers
from loom_backend.api.middleware import PREFIX, BodySizeLimit
from loom_backend.api.routes import auth, metrics, migrations, ops, registry, runs
from loom_backend.api.routes.auth import local_path
from loom_backend.auth import AccessControl
from loom_backend.service import LoomService

__all__ = ["SESSION_COOKIE", "create_api", "local_path"]


def create_api(
    get_service: Callable[[], LoomService], get_access: Callable[[], AccessControl] | None = None
) -> FastAPI:
    """Build the FastAPI app; `get_service` and `get_access` are resolved per request so tests and bootstrap
    choose the adapters (`get_access` defaults to the running Loom's)."""
    if get_access is None:
        from loom_backend.bootstrap import current_access

        get_access = current_access
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
    app.state.get_access = get_access
    install_error_handlers(app)
    for module in (ops, auth, registry, migrations, runs, metrics):
        app.include_router(module.router, prefix=PREFIX)
    app.add_middleware(BodySizeLimit)
    return app
