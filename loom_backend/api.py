"""Loom's HTTP API under /api: the migrator contract and the operator routes.

The only place that maps typed errors to HTTP status codes.
"""

import asyncio
import csv
import gc
import io
import os
import resource
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Annotated, Any, Self
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Form, Path, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loom_backend import errors
from loom_backend.auth import AccessControl, Identity, LoginRequest, Principal, Role
from loom_backend.domain import (
    RUN_ID_SEPARATOR,
    Burndown,
    CandidatePage,
    CandidateStatus,
    CandidateStepsResponse,
    DryRunCandidateRequest,
    DryRunResult,
    EventPage,
    EventType,
    FailureList,
    ListMigrationsResponse,
    MetricsOverview,
    MetricsTimeline,
    Migration,
    MigrationAnnouncement,
    PrometheusSnapshot,
    RetryStepRequest,
    ReviewRequest,
    StartRequest,
    StepMetricsResponse,
    StepStatusEvent,
    SubmitCandidatesRequest,
    UpdateInputsRequest,
    WireModel,
)
from loom_backend.service import MAX_FAILURES, MAX_TIMELINE_DAYS, LoomService

MAX_BODY_BYTES = 10 * 1024 * 1024
PREFIX = "/api"
SESSION_COOKIE = "loom_session"
WWW_AUTHENTICATE = 'Bearer realm="loom"'

_ERROR_STATUS: list[tuple[type[errors.LoomError], int]] = [
    (errors.NotFound, status.HTTP_404_NOT_FOUND),
    (errors.Conflict, status.HTTP_409_CONFLICT),
    (errors.InvalidInput, status.HTTP_400_BAD_REQUEST),
    (errors.MigratorUnavailable, status.HTTP_502_BAD_GATEWAY),
    (errors.Unauthenticated, status.HTTP_401_UNAUTHORIZED),
    (errors.Forbidden, status.HTTP_403_FORBIDDEN),
]


class ErrorDetail(BaseModel):
    field: str
    message: str
    rule: str | None = None


class ErrorBody(BaseModel):
    """The shape of every error Loom answers."""

    error: str
    message: str
    details: list[ErrorDetail] | None = None


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    """Declare a route's error answers in its OpenAPI, so clients (and the schema fuzz test) know every one."""
    described = {
        400: "The request breaks a rule; `details` names the field",
        401: "No valid session cookie or bearer token",
        403: "Authenticated, but not allowed: a role too low, or another token's Migration",
        404: "Not found",
        409: "The Run or Candidate is not in a state that allows this",
        413: "The body is too large",
        422: "The request is malformed; `details` names each field",
        502: "The Migrator could not be reached or answered something Loom cannot read",
    }
    return {code: {"model": ErrorBody, "description": described[code]} for code in codes}


def error_body(code: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Every error Loom answers has this shape: a stable code, a sentence, and per-field details."""
    body: dict[str, Any] = {"error": code, "message": message}
    if details:
        body["details"] = details
    return body


class BodySizeLimit:
    """Refuse bodies over the limit with 413 before they are read into memory."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        received = 0
        too_large = False

        async def limited_receive() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await self._too_large(send)

    async def _too_large(self, send: Send) -> None:
        response = JSONResponse(
            error_body("body_too_large", f"Request bodies are limited to {self.max_bytes // (1024 * 1024)} MB"),
            status_code=413,
        )
        await response({"type": "http"}, _no_receive, send)


class _BodyTooLarge(Exception):
    pass


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def same_origin(request: Request) -> bool:
    """Browsers name the page a form came from; refusing other sites stops them signing a browser in (login CSRF)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return urlsplit(origin).netloc == request.headers.get("host", "")


def local_path(target: str) -> str:
    """Where to go after signing in: a path on this site, never another origin ('//host', '/\\host', 'https:')."""
    if not target.startswith("/") or target.startswith(("//", "/\\")) or any(c in target for c in "\r\n\t"):
        return "/"
    return target


def _set_session_cookie(response: Response, access: AccessControl, secret: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=int(access.session_lifetime.total_seconds()),
        path="/",
        httponly=True,
        samesite="lax",
        secure=access.secure_cookie,
    )


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and 0 < len(token) <= 512 else None


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    return ".".join(parts) or "body"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"field": _field(tuple(e["loc"])), "rule": e["type"], "message": e["msg"]} for e in exc.errors()]
        too_many = any(d["rule"] == "too_long" and d["field"] == "candidates" for d in details)
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
        return JSONResponse(
            error_body("too_many_candidates" if too_many else "invalid_request", summary, details),
            status_code=413 if too_many else 422,
        )

    @app.exception_handler(errors.LoomError)
    async def _domain_error(_: Request, exc: errors.LoomError) -> JSONResponse:
        code = next((c for kind, c in _ERROR_STATUS if isinstance(exc, kind)), 500)
        details = (
            [{"field": exc.field, "message": str(exc)}] if isinstance(exc, errors.InvalidInput) and exc.field else None
        )
        headers = {"WWW-Authenticate": WWW_AUTHENTICATE} if isinstance(exc, errors.Unauthenticated) else None
        return JSONResponse(error_body(type(exc).__name__, str(exc), details), status_code=code, headers=headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            message = "body: the request body is not valid UTF-8 JSON"
            details = [{"field": "body", "rule": "json_invalid", "message": message}]
            return JSONResponse(error_body("invalid_request", message, details), status_code=422)
        return JSONResponse(error_body("http_error", str(exc.detail)), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(
            error_body(
                "internal_error", "Loom hit an unexpected error; the request was not applied. See the server log."
            ),
            status_code=500,
        )


def create_api(
    get_service: Callable[[], LoomService],
    actor_of: Callable[[Request], Awaitable[str]] | None = None,
    get_access: Callable[[], AccessControl] | None = None,
) -> FastAPI:
    """Build the FastAPI app; `get_service` and `get_access` are resolved per request so tests and bootstrap
    choose the adapters (`get_access` defaults to the running Loom's). `actor_of` names who an operator action
    is recorded as; by default the authenticated operator's name."""
    if get_access is None:
        from loom_backend.bootstrap import current_access

        get_access = current_access

    resolve_access = get_access

    # Async, so FastAPI calls them on the event loop: a plain function would cost a thread hop per request.
    async def the_service() -> LoomService:
        return get_service()

    async def the_access() -> AccessControl:
        return resolve_access()

    Service = Annotated[LoomService, Depends(the_service)]
    Access = Annotated[AccessControl, Depends(the_access)]

    async def migrator_principal(request: Request, access: Access) -> Principal:
        token = _bearer(request)
        if token is None:
            raise errors.Unauthenticated(
                "Migrator routes need `Authorization: Bearer <token>`; an admin creates one with "
                "`loom token create <migrator-app>`"
            )
        principal = access.recent_bearer(token) or await asyncio.to_thread(access.bearer, token)
        if principal is None:
            raise errors.Unauthenticated("The bearer token is not valid: unknown or revoked")
        if not principal.is_migrator:
            raise errors.Forbidden("This is an operator token; Migrator routes need a Migrator token")
        return principal

    async def identity(request: Request, access: Access) -> Principal:
        """Proxy header (when configured), then session cookie, then bearer token."""
        if access.proxy_header and (name := request.headers.get(access.proxy_header)):
            return await asyncio.to_thread(access.proxy_user, name)
        token = _bearer(request)
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie and len(cookie) <= 256:
            principal = await asyncio.to_thread(access.session, cookie)
            if principal is not None:
                return principal
            if token is None:
                raise errors.Unauthenticated("The session has expired or was signed out; sign in again")
        if token is not None:
            principal = access.recent_bearer(token) or await asyncio.to_thread(access.bearer, token)
            if principal is None:
                raise errors.Unauthenticated("The bearer token is not valid: unknown or revoked")
            return principal
        raise errors.Unauthenticated("Sign in (POST /api/auth/login) or send `Authorization: Bearer <operator token>`")

    def role(needed: Role) -> Callable[..., Awaitable[Principal]]:
        async def authorized(principal: Annotated[Principal, Depends(identity)]) -> Principal:
            AccessControl.require_role(principal, needed)
            return principal

        return authorized

    Migrator_ = Annotated[Principal, Depends(migrator_principal)]
    Viewer = Annotated[Principal, Depends(role(Role.VIEWER))]
    Operator = Annotated[Principal, Depends(role(Role.OPERATOR))]

    async def operator_name(request: Request, principal: Operator) -> str:
        return principal.name

    Actor = Annotated[str, Depends(actor_of or operator_name)]
    MigrationId = Annotated[str, Path(max_length=128)]
    CandidateId = Annotated[str, Path(max_length=128)]
    StepName = Annotated[str, Path(max_length=128)]

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
    install_error_handlers(app)
    router = APIRouter(prefix=PREFIX)

    @router.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/debug/process", tags=["ops"], response_model=ProcessFigures, responses=_errors(401, 403))
    async def debug_process(_: Annotated[Principal, Depends(role(Role.ADMIN))]) -> Any:
        """This process's size for admins, so a soak (or an operator) sees growth that should not be there."""
        return ProcessFigures.now()

    # -- signing in -------------------------------------------------------------------------

    @router.post("/auth/login", tags=["auth"], response_model=Identity, responses=_errors(401, 413, 422))
    async def login(body: LoginRequest, access: Access) -> Any:
        """Check a built-in account's password; answer with who signed in and set the `loom_session` cookie."""
        secret, principal = await asyncio.to_thread(access.login, body.username, body.password)
        response = JSONResponse(Identity.of(principal).model_dump(mode="json"))
        _set_session_cookie(response, access, secret)
        return response

    @router.post(
        "/auth/login-form",
        tags=["auth"],
        status_code=303,
        response_class=RedirectResponse,
        responses={
            303: {"description": "To `next` when signed in; back to /login?failed=1 when not"},
            **_errors(413, 422),
        },
    )
    async def login_form(
        request: Request,
        access: Access,
        username: Annotated[str, Form(max_length=128)] = "",
        password: Annotated[str, Form(max_length=1024)] = "",
        next_: Annotated[str, Form(alias="next", max_length=2048)] = "/",
    ) -> Response:
        """The sign-in page's plain HTML form: the browser posts it and follows the redirect, cookie set."""
        if not same_origin(request):
            raise errors.Forbidden("Sign in from Loom's own sign-in page; this form was posted from another site")
        target = local_path(next_)
        try:
            secret, _ = await asyncio.to_thread(access.login, username, password)
        except errors.Unauthenticated:
            query = urlencode({"failed": "1", "username": username, "next": target})
            return RedirectResponse(f"/login?{query}", status_code=303)
        response = RedirectResponse(target, status_code=303)
        _set_session_cookie(response, access, secret)
        return response

    @router.post("/auth/logout", tags=["auth"], status_code=204)
    async def logout(request: Request, access: Access) -> Response:
        """End this browser's session (if any) and clear its cookie."""
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie and len(cookie) <= 256:
            await asyncio.to_thread(access.logout, cookie)
        response = Response(status_code=204)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=access.secure_cookie)
        return response

    @router.get("/auth/me", tags=["auth"], response_model=Identity, responses=_errors(401))
    async def me(principal: Annotated[Principal, Depends(identity)]) -> Any:
        return Identity.of(principal)

    # -- migrator registry ------------------------------------------------------------------

    @router.post("/registry/announce", tags=["migrators"], responses=_errors(400, 401, 403, 413, 422))
    async def announce(
        body: MigrationAnnouncement, principal: Migrator_, access: Access, service: Service
    ) -> dict[str, str]:
        """Register or update a Migration and its Candidates (idempotent by id); the first token to announce owns it."""
        claimed = await asyncio.to_thread(access.claim_migration, principal, body.id)
        try:
            await service.announce(body)
        except BaseException:
            if claimed:
                await asyncio.to_thread(access.release_migration, principal, body.id)
            raise
        return {"status": "SUCCESS"}

    @router.post(
        "/migrations/{migration_id}/candidates",
        status_code=204,
        tags=["migrators"],
        responses=_errors(401, 403, 404, 413, 422),
    )
    async def submit_candidates(
        migration_id: MigrationId, body: SubmitCandidatesRequest, principal: Migrator_, access: Access, service: Service
    ) -> Response:
        """Merge re-discovered Candidates: only not_started ones are replaced; Candidates with a Run are kept."""
        await asyncio.to_thread(access.check_migration, principal, migration_id)
        await service.submit_candidates(migration_id, body.candidates)
        return Response(status_code=204)

    @router.post(
        "/event/{run_id}", status_code=202, tags=["migrators"], responses=_errors(400, 401, 403, 404, 409, 413, 422)
    )
    async def step_event(
        run_id: Annotated[str, Path(max_length=260)],
        body: StepStatusEvent,
        principal: Migrator_,
        access: Access,
        service: Service,
    ) -> dict[str, str]:
        """A Migrator's callback about one Step of a Run."""
        suffix = RUN_ID_SEPARATOR + body.candidate_id
        if not run_id.endswith(suffix) or len(run_id) == len(suffix):
            raise errors.InvalidInput(
                f"Run {run_id!r} is not a Run of Candidate {body.candidate_id!r}; post to /api/event/<callbackId>",
                field="candidateId",
            )
        migration_id = run_id[: -len(suffix)]
        if not access.recently_allowed(principal, migration_id):
            await asyncio.to_thread(access.check_migration, principal, migration_id)
        await service.step_event(run_id, body)
        return {"status": "accepted"}

    # -- reading ----------------------------------------------------------------------------

    @router.get("/migrations", tags=["migrations"], response_model=ListMigrationsResponse, responses=_errors(401, 403))
    async def list_migrations(service: Service, _: Viewer) -> Any:
        return ListMigrationsResponse(migrations=await service.all_migrations())

    @router.get(
        "/migrations/{migration_id}",
        tags=["migrations"],
        response_model=Migration,
        responses=_errors(401, 403, 404, 422),
    )
    async def get_migration(migration_id: MigrationId, service: Service, _: Viewer) -> Any:
        return await service.get_migration(migration_id)

    @router.get(
        "/migrations/{migration_id}/candidates",
        tags=["migrations"],
        response_model=CandidatePage,
        responses=_errors(401, 403, 404, 422),
    )
    async def list_candidates(
        migration_id: MigrationId,
        service: Service,
        _: Viewer,
        status_: Annotated[CandidateStatus | None, Query(alias="status")] = None,
        kind: Annotated[str | None, Query(max_length=128)] = None,
        q: Annotated[str | None, Query(max_length=256, description="Text in the id or metadata")] = None,
        needs_attention: Annotated[bool, Query(alias="needsAttention")] = False,
        limit: Annotated[int, Query(ge=1, le=5000)] = 500,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> Any:
        return await service.list_candidates(
            migration_id, status=status_, kind=kind, text=q, needs_attention=needs_attention, limit=limit, offset=offset
        )

    @router.get(
        "/migrations/{migration_id}/events",
        tags=["migrations"],
        response_model=EventPage,
        responses=_errors(401, 403, 404, 422),
    )
    async def list_events(
        migration_id: MigrationId,
        service: Service,
        _: Viewer,
        candidate_id: Annotated[str | None, Query(alias="candidateId", max_length=128)] = None,
        event_type: Annotated[EventType | None, Query(alias="type")] = None,
        actor: Annotated[str | None, Query(max_length=128)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    ) -> Any:
        return await service.list_events(
            migration_id, candidate_id=candidate_id, event_type=event_type, actor=actor, limit=limit, offset=offset
        )

    # -- driving Runs -----------------------------------------------------------------------

    run_path = "/migrations/{migration_id}/candidates/{candidate_id}"
    action_errors = _errors(400, 401, 403, 404, 409, 413, 422)

    @router.post(f"{run_path}/start", status_code=202, tags=["runs"], responses=action_errors)
    async def start(
        migration_id: MigrationId,
        candidate_id: CandidateId,
        service: Service,
        actor: Actor,
        _: Operator,
        body: StartRequest | None = None,
    ) -> dict[str, str]:
        await service.start_run(migration_id, candidate_id, (body or StartRequest()).inputs, actor)
        return {"status": "started"}

    @router.post(f"{run_path}/cancel", status_code=204, tags=["runs"], responses=action_errors)
    async def cancel(
        migration_id: MigrationId, candidate_id: CandidateId, service: Service, actor: Actor, _: Operator
    ) -> Response:
        await service.cancel_run(migration_id, candidate_id, actor)
        return Response(status_code=204)

    @router.post(f"{run_path}/retry-step", status_code=202, tags=["runs"], responses=action_errors)
    async def retry_step(
        migration_id: MigrationId,
        candidate_id: CandidateId,
        body: RetryStepRequest,
        service: Service,
        actor: Actor,
        _: Operator,
    ) -> dict[str, str]:
        await service.retry_step(migration_id, candidate_id, body.step_name, actor)
        return {"status": "accepted"}

    @router.post(f"{run_path}/steps/{{step_name}}/approve", status_code=202, tags=["runs"], responses=action_errors)
    async def approve(
        migration_id: MigrationId,
        candidate_id: CandidateId,
        step_name: StepName,
        service: Service,
        actor: Actor,
        _: Operator,
        body: ReviewRequest | None = None,
    ) -> dict[str, str]:
        await service.review_step(migration_id, candidate_id, step_name, True, actor, (body or ReviewRequest()).comment)
        return {"status": "accepted"}

    @router.post(f"{run_path}/steps/{{step_name}}/reject", status_code=202, tags=["runs"], responses=action_errors)
    async def reject(
        migration_id: MigrationId,
        candidate_id: CandidateId,
        step_name: StepName,
        service: Service,
        actor: Actor,
        _: Operator,
        body: ReviewRequest | None = None,
    ) -> dict[str, str]:
        await service.review_step(
            migration_id, candidate_id, step_name, False, actor, (body or ReviewRequest()).comment
        )
        return {"status": "accepted"}

    @router.post(f"{run_path}/steps/{{step_name}}/mark-merged", status_code=202, tags=["runs"], responses=action_errors)
    async def mark_merged(
        migration_id: MigrationId,
        candidate_id: CandidateId,
        step_name: StepName,
        service: Service,
        actor: Actor,
        _: Operator,
    ) -> dict[str, str]:
        await service.mark_merged(migration_id, candidate_id, step_name, actor)
        return {"status": "accepted"}

    @router.patch(f"{run_path}/inputs", status_code=204, tags=["runs"], responses=action_errors)
    async def update_inputs(
        migration_id: MigrationId,
        candidate_id: CandidateId,
        body: UpdateInputsRequest,
        service: Service,
        actor: Actor,
        _: Operator,
    ) -> Response:
        await service.update_inputs(migration_id, candidate_id, body.inputs, actor)
        return Response(status_code=204)

    @router.get(
        f"{run_path}/steps",
        tags=["runs"],
        response_model=CandidateStepsResponse,
        responses=_errors(401, 403, 404, 422),
    )
    async def candidate_steps(migration_id: MigrationId, candidate_id: CandidateId, service: Service, _: Viewer) -> Any:
        return await service.candidate_steps(migration_id, candidate_id)

    @router.post(
        "/migrations/{migration_id}/dry-run",
        tags=["runs"],
        response_model=DryRunResult,
        responses=_errors(400, 401, 403, 404, 413, 422, 502),
    )
    async def dry_run(migration_id: MigrationId, body: DryRunCandidateRequest, service: Service, _: Operator) -> Any:
        return await service.dry_run(migration_id, body)

    app.include_router(router)
    app.include_router(
        _metrics_router(Service), dependencies=[Depends(role(Role.VIEWER))], responses=_errors(401, 403, 404, 422)
    )
    app.add_middleware(BodySizeLimit)
    return app


# -- process figures (GET /api/debug/process) ---------------------------------------------------

_STARTED = time.monotonic()


class ProcessFigures(WireModel):
    """What grows when a process leaks: memory, threads, `sys.path` (every failed import walks it), gc counts."""

    pid: int
    uptime_seconds: float
    rss_bytes: int
    threads: int
    sys_path_entries: int
    gc_counts: list[int]

    @classmethod
    def now(cls) -> Self:
        return cls(
            pid=os.getpid(),
            uptime_seconds=round(time.monotonic() - _STARTED, 3),
            rss_bytes=_rss_bytes(),
            threads=_os_threads(),
            sys_path_entries=len(sys.path),
            gc_counts=list(gc.get_count()),
        )


def _rss_bytes() -> int:
    """Resident memory now, from /proc on Linux; elsewhere the peak, which is what `resource` offers."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def _os_threads() -> int:
    """Every thread of the process (Temporal's Rust core and thread pools too), not only Python's."""
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("Threads:"))
    except (OSError, StopIteration):
        return threading.active_count()


# -- metrics, history export and Prometheus ----------------------------------------------------


def _metrics_router(Service: Any) -> APIRouter:
    """Read-only figures from the event log and the read model; Service is create_api's dependency."""
    router = APIRouter(prefix=PREFIX)
    MigrationFilter = Annotated[str | None, Query(alias="migrationId", max_length=128)]

    @router.get("/metrics/overview", tags=["metrics"], response_model=MetricsOverview)
    async def overview(service: Service, migration_id: MigrationFilter = None) -> Any:
        return await service.metrics_overview(migration_id)

    @router.get("/metrics/steps", tags=["metrics"], response_model=StepMetricsResponse)
    async def steps(service: Service, migration_id: MigrationFilter = None) -> Any:
        return await service.step_metrics(migration_id)

    @router.get("/metrics/timeline", tags=["metrics"], response_model=MetricsTimeline)
    async def timeline(
        service: Service,
        days: Annotated[int, Query(ge=1, le=MAX_TIMELINE_DAYS)] = 30,
        migration_id: MigrationFilter = None,
    ) -> Any:
        return await service.metrics_timeline(days, migration_id)

    @router.get("/metrics/failures", tags=["metrics"], response_model=FailureList)
    async def failures(
        service: Service,
        limit: Annotated[int, Query(ge=1, le=MAX_FAILURES)] = 50,
        migration_id: MigrationFilter = None,
    ) -> Any:
        return await service.recent_failures(limit, migration_id)

    @router.get("/metrics/burndown", tags=["metrics"], response_model=Burndown)
    async def burndown(service: Service, migration_id: MigrationFilter = None) -> Any:
        return await service.burndown(migration_id)

    @router.get("/migrations/{migration_id}/candidates.csv", tags=["migrations"], response_class=StreamingResponse)
    async def candidates_csv(migration_id: str, service: Service) -> StreamingResponse:
        """Every Candidate with its current Step, PR link and metadata, streamed as CSV."""
        rows = service.export_candidates(migration_id)
        header = await anext(rows)  # an unknown Migration answers 404 here, before the response starts

        async def body() -> AsyncIterator[str]:
            buffer = io.StringIO()
            writer = csv.writer(buffer)
            writer.writerow(header)
            async for row in rows:
                writer.writerow(row)
                if buffer.tell() > 64 * 1024:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
            yield buffer.getvalue()

        return StreamingResponse(
            body(),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{migration_id}-candidates.csv"'},
        )

    @router.get("/prometheus", tags=["ops"], response_class=Response)
    async def prometheus(service: Service) -> Response:
        """Prometheus text exposition, read from SQL at scrape time so every process answers the same."""
        snapshot = await service.prometheus_snapshot()
        return Response(prometheus_text(snapshot), media_type=CONTENT_TYPE_LATEST)

    return router


class _SnapshotCollector(Collector):
    def __init__(self, snapshot: PrometheusSnapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        in_flight = GaugeMetricFamily(
            "loom_runs_in_flight", "Runs in progress (Candidates running), per Migration", labels=["migration"]
        )
        for migration_id, n in sorted(s.runs_in_flight.items()):
            in_flight.add_metric([migration_id], n)
        yield in_flight
        outcomes = CounterMetricFamily(
            "loom_step_outcomes", "Steps that reached a terminal status, from the event log", labels=["status"]
        )
        for status_, n in sorted(s.step_outcomes.items()):
            outcomes.add_metric([status_], n)
        yield outcomes
        yield CounterMetricFamily(
            "loom_dispatch_errors",
            "Steps failed because dispatching them to the Migrator failed after every attempt",
            value=s.dispatch_errors,
        )
        latency = s.callback_latency
        yield HistogramMetricFamily(
            "loom_callback_latency_seconds",
            "Seconds from a Step's dispatch to the Migrator's first callback, over the latest dispatches",
            buckets=[
                *((str(b), c) for b, c in zip(latency.buckets, latency.counts, strict=True)),
                ("+Inf", latency.count),
            ],
            sum_value=latency.sum_seconds,
        )


def prometheus_text(snapshot: PrometheusSnapshot) -> bytes:
    """Render a snapshot in its own registry: nothing is shared with prometheus_client's global one."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot))
    return generate_latest(registry)
