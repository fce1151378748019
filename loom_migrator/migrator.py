"""The Migrator: a Migration's declaration, its discovery, its Step handlers, and the HTTP app Loom calls."""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import string
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar, cast

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from loom_migrator.backoff import ANNOUNCE_BACKOFF, CALLBACK_BACKOFF, Backoff
from loom_migrator.client import LoomClient, LoomError, LoomRejected
from loom_migrator.context import StepContext
from loom_migrator.dryrun import DryRunContext, StepSkipped
from loom_migrator.server import ThreadedServer
from loom_migrator.signing import SignatureRejected, SignatureVerifier, signing_key
from loom_migrator.wire import (
    Candidate,
    DispatchStepRequest,
    DryRunRequest,
    DryRunResult,
    FileDiff,
    InputDefinition,
    MigrationAnnouncement,
    StepDefinition,
    StepDryRunResult,
)

log = logging.getLogger("loom_migrator")

MANUAL_REVIEW = "manual-review"
# How many accepted dispatch ids a Migrator remembers to drop Loom's repeats (Loom retries within minutes).
REMEMBERED_DISPATCHES = 10_000

StepHandler = Callable[[StepContext], Awaitable[None]]
DryRunOutput = Iterable[FileDiff | None] | StepDryRunResult | None
DryRunFunction = Callable[[DryRunContext], DryRunOutput | Awaitable[DryRunOutput]]
Discovery = Callable[[], Iterable[Candidate] | Awaitable[Iterable[Candidate]]]
H = TypeVar("H", bound=StepHandler)
D = TypeVar("D", bound=DryRunFunction)
F = TypeVar("F", bound=Discovery)


class StepFailed(Exception):
    """Raise from a handler to fail the Step with exactly this message (other errors get their type name too)."""


def error_text(exc: BaseException) -> str:
    if isinstance(exc, StepFailed) or type(exc) in (Exception, RuntimeError, ValueError):
        return str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _invalid(exc: ValidationError) -> JSONResponse:
    details = exc.errors(include_url=False, include_context=False, include_input=False)
    return JSONResponse({"error": "invalid_request", "message": "the request body is invalid", "details": details}, 422)


class _KeepUnknown(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def format_instructions(template: str, candidate: Candidate) -> str:
    """Fill `{id}`, `{kind}` and any `{metadataKey}` from the Candidate; unknown placeholders stay as written."""
    values = _KeepUnknown({**candidate.metadata, "id": candidate.id, "kind": candidate.kind})
    try:
        return string.Formatter().vformat(template, (), values)
    except (ValueError, IndexError):
        return template


class Migrator:
    """Declare one Migration, its discovery and one handler per Step type; serve what Loom calls.

    `loom_url` defaults to $LOOM_URL, then http://localhost:3000; `migrator_url` (where Loom reaches
    this Migrator) to $MIGRATOR_URL, then http://localhost:{port}; `token` (from `loom token create`)
    to $LOOM_TOKEN. The token authenticates every call to Loom, and Loom signs what it sends with a
    key derived from it: /dispatch-step and /dry-run refuse (401) anything unsigned, forged, stale or
    replayed. Handlers are routed by the Step's `type`, or by its name when it has none.
    """

    def __init__(
        self,
        id: str,
        name: str,
        description: str,
        *,
        overview: Sequence[str] = (),
        inputs: Sequence[InputDefinition] | Mapping[str, str] = (),
        app_name: str | None = None,
        loom_url: str | None = None,
        migrator_url: str | None = None,
        token: str | None = None,
        announce_backoff: Backoff = ANNOUNCE_BACKOFF,
        callback_backoff: Backoff = CALLBACK_BACKOFF,
        rediscover_every: float | None = 300.0,
    ) -> None:
        self.id = id
        self.name = name
        self.description = description
        self.overview = list(overview)
        self.inputs = (
            [InputDefinition(name=key, label=label) for key, label in inputs.items()]
            if isinstance(inputs, Mapping)
            else list(inputs)
        )
        self.app_name = app_name or id
        self.loom_url = (loom_url or os.environ.get("LOOM_URL") or "http://localhost:3000").rstrip("/")
        self._migrator_url = migrator_url or os.environ.get("MIGRATOR_URL")
        self.port: int | None = None
        self.announce_backoff = announce_backoff
        self.rediscover_every = rediscover_every
        self.token = token or os.environ.get("LOOM_TOKEN") or None
        if self.token is None:
            log.warning(
                "Migrator %r has no Loom token (pass token= or set LOOM_TOKEN; an admin creates one with "
                "`loom token create %s`): Loom will refuse its calls, and it will refuse Loom's",
                id,
                self.app_name,
            )
        self._verifier = SignatureVerifier(signing_key(self.token)) if self.token else None
        self.client = LoomClient(
            self.loom_url, token=self.token, announce_backoff=announce_backoff, callback_backoff=callback_backoff
        )
        self.steps: list[StepDefinition] = []
        self._handlers: dict[str, StepHandler] = {}
        self._dry_runs: dict[str, DryRunFunction] = {}
        self._discovery: Discovery | None = None
        self._running: dict[tuple[str, str], tuple[asyncio.Task[None], StepContext]] = {}
        self._accepted: OrderedDict[str, None] = OrderedDict()
        self._background: set[asyncio.Task[None]] = set()
        self.announced = threading.Event()
        self.router = self._build_router()
        self.app = FastAPI(title=f"{name} (Loom Migrator)", lifespan=self.lifespan)
        self.app.include_router(self.router)

    @property
    def migrator_url(self) -> str:
        if self._migrator_url:
            return self._migrator_url.rstrip("/")
        return f"http://127.0.0.1:{self.port or 8000}"

    # ---- declaring the Migration -------------------------------------------------------------

    def add_step(
        self,
        name: str,
        *,
        type: str | None = None,
        description: str | None = None,
        config: Mapping[str, str] | None = None,
        instructions: str | None = None,
    ) -> StepDefinition:
        """Add a Step to the Migration's plan, in order; its handler is registered apart (see `handler`)."""
        if any(step.name == name for step in self.steps):
            raise ValueError(f"Migration {self.id!r} already has a Step named {name!r}")
        step = StepDefinition(
            name=name,
            migrator_app=self.app_name,
            type=type,
            description=description,
            config=dict(config or {}),
            instructions=instructions,
        )
        self.steps.append(step)
        return step

    def handler(self, step_type: str) -> Callable[[H], H]:
        """Register the handler of a Step type (or of a Step name, for Steps without a type)."""

        def register(fn: H) -> H:
            is_async = inspect.iscoroutinefunction(fn)
            if not is_async:
                raise TypeError(f"the handler of {step_type!r} must be an `async def` function")
            self._handlers[step_type] = fn
            return fn

        return register

    def step(
        self,
        name: str,
        *,
        type: str | None = None,
        description: str | None = None,
        config: Mapping[str, str] | None = None,
        instructions: str | None = None,
    ) -> Callable[[H], H]:
        """Add a Step to the plan and register its handler: `@migrator.step("bump-image")`."""
        self.add_step(name, type=type, description=description, config=config, instructions=instructions)
        return self.handler(type or name)

    def manual_review(self, name: str, instructions: str, *, description: str | None = None) -> StepDefinition:
        """A Step an operator approves or rejects; `{id}` and metadata placeholders fill per Candidate."""
        step = self.add_step(name, type=MANUAL_REVIEW, description=description, instructions=instructions)
        self._handlers.setdefault(MANUAL_REVIEW, self._manual_review)
        return step

    def dry_run(self, step_type: str) -> Callable[[D], D]:
        """Register what a Step type would change: return FileDiffs (see `file_diff`), or call `ctx.skip()`."""

        def register(fn: D) -> D:
            self._dry_runs[step_type] = fn
            return fn

        return register

    def discover(self, fn: F) -> F:
        """Register the function (sync or async) that yields this Migration's Candidates."""
        self._discovery = fn
        return fn

    async def candidates(self) -> list[Candidate]:
        discovery = self._discovery
        if discovery is None:
            return []
        if inspect.iscoroutinefunction(discovery):
            return list(await discovery())
        return await asyncio.to_thread(lambda: list(cast(Iterable[Candidate], discovery())))

    async def announcement(self) -> MigrationAnnouncement:
        return MigrationAnnouncement(
            id=self.id,
            name=self.name,
            description=self.description,
            overview=self.overview,
            required_inputs=self.inputs,
            steps=self.steps,
            candidates=await self.candidates(),
            migrator_url=self.migrator_url,
        )

    # ---- talking to Loom ----------------------------------------------------------------------

    async def announce(self) -> None:
        """Announce until Loom answers: discovery or network errors are retried with backoff."""
        delays = self.announce_backoff.delays()
        while True:
            try:
                announcement = await self.announcement()
                await self.client.announce(announcement)
            except LoomRejected:
                raise
            except Exception as exc:
                delay = next(delays, None)
                if delay is None:
                    raise
                log.warning("Announcing Migration %r failed (%s); retrying in %.2fs", self.id, error_text(exc), delay)
                await asyncio.sleep(delay)
            else:
                log.info(
                    "Announced Migration %r with %d Candidates to %s",
                    self.id,
                    len(announcement.candidates),
                    self.loom_url,
                )
                self.announced.set()
                return

    async def resubmit_candidates(self) -> int:
        """Run discovery again and submit what it finds; returns how many Candidates were sent."""
        candidates = await self.candidates()
        await self.client.submit_candidates(self.id, candidates)
        log.info("Submitted %d Candidates of Migration %r", len(candidates), self.id)
        return len(candidates)

    async def _announce_then_rediscover(self) -> None:
        try:
            await self.announce()
        except LoomError as exc:
            log.error("Migration %r is not registered with Loom: %s", self.id, exc)
            return
        while self.rediscover_every:
            await asyncio.sleep(self.rediscover_every)
            try:
                await self.resubmit_candidates()
            except Exception as exc:
                log.warning("Re-submitting the Candidates of %r failed: %s", self.id, error_text(exc))

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # ---- running Steps --------------------------------------------------------------------

    def already_accepted(self, request: DispatchStepRequest) -> bool:
        """True when a dispatch with this id was accepted before: Loom retried a call whose answer got lost."""
        return request.dispatch_id is not None and request.dispatch_id in self._accepted

    def _remember(self, dispatch_id: str | None) -> None:
        if dispatch_id is None:
            return
        self._accepted[dispatch_id] = None
        self._accepted.move_to_end(dispatch_id)
        while len(self._accepted) > REMEMBERED_DISPATCHES:
            self._accepted.popitem(last=False)

    def dispatch(self, request: DispatchStepRequest) -> bool:
        """Start the Step's handler in the background; False for a repeat, or when that Step of that Run is underway.

        A repeat of a dispatch Loom already made (its own retry of a call whose answer got lost) carries
        the same dispatch id and must not run the handler twice, even after it finished; a Retry (a new
        id) after the Step reported its final status must run it again.
        """
        if self.already_accepted(request):
            log.info("Dispatch %r was accepted before; ignoring the repeat", request.dispatch_id)
            return False
        key = (request.callback_id, request.step_name)
        previous = self._running.get(key)
        if previous is not None and not previous[0].done() and not previous[1].finished:
            log.info("Step %r of Run %r is already running; ignoring the repeated dispatch", *key[::-1])
            return False
        self._remember(request.dispatch_id)
        ctx = StepContext(request, self.client)
        task = self._spawn(self.run_step(ctx))
        self._running[key] = (task, ctx)
        task.add_done_callback(
            lambda _: self._running.pop(key, None) if self._running.get(key, (None,))[0] is task else None
        )
        return True

    async def run_step(self, ctx: StepContext) -> None:
        """Run one Step's handler to its end: a normal return with nothing reported means `completed`."""
        request = ctx.request
        step_type = request.type or request.step_name
        handler = self._handlers.get(step_type)
        try:
            if handler is None:
                known = ", ".join(sorted(self._handlers)) or "none"
                raise StepFailed(
                    f"Migrator {self.app_name!r} has no handler for Step type {step_type!r} (it handles: {known})"
                )
            await handler(ctx)
            if not ctx.reported:
                await ctx.completed()
        except LoomError as exc:
            log.warning("Step %r of Run %r stopped: %s", request.step_name, request.callback_id, exc)
        except Exception as exc:
            log.exception("Step %r of Run %r failed", request.step_name, request.callback_id)
            try:
                await ctx.failed(error_text(exc))
            except LoomError as report_error:
                log.warning("Could not report the failure of Step %r: %s", request.step_name, report_error)

    async def _manual_review(self, ctx: StepContext) -> None:
        template = next(
            (s.instructions for s in [*(ctx.candidate.steps or []), *self.steps] if s.name == ctx.step_name),
            None,
        )
        template = template or ctx.config.get("instructions")
        instructions = (
            format_instructions(template, ctx.candidate)
            if template
            else f"Review Step {ctx.step_name!r} for {ctx.candidate.id}, then Approve or Reject it in Loom."
        )
        await ctx.awaiting_review(instructions)

    async def preview(self, request: DryRunRequest) -> DryRunResult:
        """Each Step's file diffs for the Candidate; a Step's error is reported, never raised."""
        return DryRunResult(steps=[await self._preview_step(request, step) for step in request.steps])

    async def _preview_step(self, request: DryRunRequest, step: StepDefinition) -> StepDryRunResult:
        step_type = step.type or step.name
        fn = self._dry_runs.get(step_type)
        if fn is None:
            if step_type not in self._handlers:
                return StepDryRunResult(step_name=step.name, error=f"no handler for Step type {step_type!r}")
            # A review changes no file; the Migrator owns what its Step types mean (DOMAIN: type routing).
            return StepDryRunResult(step_name=step.name, skipped=step_type == MANUAL_REVIEW)
        ctx = DryRunContext(request, step)
        try:
            if inspect.iscoroutinefunction(fn):
                output = await fn(ctx)
            else:
                output = await asyncio.to_thread(fn, ctx)
                if inspect.isawaitable(output):
                    output = await output
        except StepSkipped:
            return StepDryRunResult(step_name=step.name, skipped=True)
        except Exception as exc:
            log.warning("Dry-run of Step %r for %r failed: %s", step.name, request.candidate.id, exc)
            return StepDryRunResult(step_name=step.name, error=error_text(exc))
        if isinstance(output, StepDryRunResult):
            return output.model_copy(update={"step_name": step.name})
        return StepDryRunResult(step_name=step.name, files=[d for d in (output or []) if d is not None])

    # ---- the HTTP app ---------------------------------------------------------------------

    def _build_router(self) -> APIRouter:
        router = APIRouter()

        @router.post("/dispatch-step", status_code=202)
        async def dispatch_step(request: Request) -> JSONResponse:
            body = await request.body()
            if (refusal := self._refuse_unsigned(request, body)) is not None:
                return refusal
            try:
                dispatched = DispatchStepRequest.model_validate_json(body)
            except ValidationError as exc:
                return _invalid(exc)
            if self.already_accepted(dispatched):
                return JSONResponse({"status": "already_accepted"}, status_code=202)
            started = self.dispatch(dispatched)
            return JSONResponse({"status": "accepted" if started else "already_running"}, status_code=202)

        @router.post("/dry-run", response_model=DryRunResult)
        async def dry_run(request: Request) -> JSONResponse:
            body = await request.body()
            if (refusal := self._refuse_unsigned(request, body)) is not None:
                return refusal
            try:
                asked = DryRunRequest.model_validate_json(body)
            except ValidationError as exc:
                return _invalid(exc)
            return JSONResponse((await self.preview(asked)).model_dump(mode="json"))

        @router.post("/rediscover", status_code=202)
        async def rediscover() -> dict[str, str]:
            self._spawn(self._resubmit_logged())
            return {"status": "accepted"}

        @router.get("/healthz")
        async def healthz() -> dict[str, Any]:
            return {"status": "ok", "migration": self.id, "announced": self.announced.is_set()}

        return router

    def _refuse_unsigned(self, request: Request, body: bytes) -> JSONResponse | None:
        """None when Loom signed this request for our token; else the 401 to answer."""
        if self._verifier is None:
            reason = "this Migrator has no Loom token (LOOM_TOKEN), so it cannot check who is calling"
        else:
            try:
                self._verifier.verify(request.headers, request.method, request.url.path, body)
                return None
            except SignatureRejected as exc:
                reason = str(exc)
        log.warning("Refused %s %s: %s", request.method, request.url.path, reason)
        return JSONResponse({"error": "unauthorized", "message": f"Refused: {reason}"}, status_code=401)

    async def _resubmit_logged(self) -> None:
        try:
            await self.resubmit_candidates()
        except Exception as exc:
            log.warning("Re-submitting the Candidates of %r failed: %s", self.id, error_text(exc))

    async def start(self) -> None:
        """Announce in the background; call from your own lifespan when you include `router` in your app."""
        self._spawn(self._announce_then_rediscover())

    async def stop(self) -> None:
        """Cancel the announce loop and running handlers (Loom re-dispatches on Retry)."""
        tasks = list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.client.aclose()

    @asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    def run(self, port: int = 8000, host: str = "0.0.0.0", log_level: str = "info") -> None:
        """Serve until interrupted (blocking)."""
        import uvicorn

        self.port = port
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        uvicorn.run(self.app, host=host, port=port, log_level=log_level)

    def serve_in_thread(self, port: int | None = None, host: str = "127.0.0.1") -> ThreadedServer:
        """Serve from a background thread; `.stop()` the result when done (or use it as a context manager).

        The port defaults to `self.port` when one was set, else 0, which picks a free port.
        """
        server = ThreadedServer(self.app, host=host, port=(self.port or 0) if port is None else port)
        self.port = server.port
        return server.start()
