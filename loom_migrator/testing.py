"""A fake Loom for testing Migrators: a real HTTP server that records what it is sent.

    with FakeLoom() as loom:
        migrator = Migrator(..., loom_url=loom.url, token=loom.token)
        with migrator.serve_in_thread():
            loom.dispatch(migrator.migrator_url, migrator.id, step, candidate)
            event = loom.wait_for_event("bump-image", StepStatus.MERGED)

Responses can be scripted per route (`loom.script("event", 503, 503)`) to exercise retries.
Like Loom, it refuses calls without its token (401) and signs what it sends with that token's key.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Literal, TypeVar

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from loom_migrator.server import ThreadedServer
from loom_migrator.signing import sign, signing_key
from loom_migrator.wire import (
    Candidate,
    DispatchStepRequest,
    DryRunRequest,
    DryRunResult,
    MigrationAnnouncement,
    StepDefinition,
    StepStatus,
    StepStatusEvent,
    SubmitCandidatesRequest,
    merged_metadata,
    run_id,
)

Route = Literal["announce", "candidates", "event"]
T = TypeVar("T")


@dataclass
class ReceivedEvent:
    callback_id: str
    event: StepStatusEvent


@dataclass
class Received:
    """Everything the fake Loom accepted (requests it answered with a scripted error are in `attempts`)."""

    attempts: list[tuple[Route, int]] = field(default_factory=list)
    announcements: list[MigrationAnnouncement] = field(default_factory=list)
    candidate_submissions: list[tuple[str, list[Candidate]]] = field(default_factory=list)
    events: list[ReceivedEvent] = field(default_factory=list)


class FakeLoom:
    """Loom's Migrator-facing routes, validated with the real wire models, answering like Loom does."""

    def __init__(self, port: int = 0, token: str | None = None) -> None:
        self.token = token or "loom_m_" + secrets.token_urlsafe(32)
        self.received = Received()
        self._scripts: dict[Route, deque[int]] = defaultdict(deque)
        self._lock = threading.RLock()
        self._server = ThreadedServer(self._build_app(), port=port)

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def port(self) -> int:
        return self._server.port

    def script(self, route: Route, *status_codes: int) -> None:
        """Answer the next requests to `route` with these status codes instead of accepting them."""
        with self._lock:
            self._scripts[route].extend(status_codes)

    def _answer(self, route: Route) -> int | None:
        with self._lock:
            scripted = self._scripts[route].popleft() if self._scripts[route] else None
            self.received.attempts.append((route, scripted or 200))
        return scripted

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        def refuse(status_code: int) -> JSONResponse:
            return JSONResponse(
                {"error": "Scripted", "message": f"scripted HTTP {status_code}"}, status_code=status_code
            )

        def invalid(exc: ValidationError) -> JSONResponse:
            return JSONResponse({"detail": exc.errors(include_url=False, include_context=False)}, status_code=422)

        def unauthenticated(request: Request) -> JSONResponse | None:
            if request.headers.get("authorization") == f"Bearer {self.token}":
                return None
            return JSONResponse(
                {"error": "Unauthenticated", "message": "Migrator routes need `Authorization: Bearer <token>`"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer realm="loom"'},
            )

        @app.post("/api/registry/announce")
        async def announce(request: Request) -> Response:
            if (refused := unauthenticated(request)) is not None:
                return refused
            if (scripted := self._answer("announce")) is not None:
                return refuse(scripted)
            try:
                announcement = MigrationAnnouncement.model_validate(await request.json())
            except ValidationError as exc:
                return invalid(exc)
            with self._lock:
                self.received.announcements.append(announcement)
            return JSONResponse({"status": "SUCCESS"})

        @app.post("/api/migrations/{migration_id}/candidates")
        async def candidates(migration_id: str, request: Request) -> Response:
            if (refused := unauthenticated(request)) is not None:
                return refused
            if (scripted := self._answer("candidates")) is not None:
                return refuse(scripted)
            try:
                body = SubmitCandidatesRequest.model_validate(await request.json())
            except ValidationError as exc:
                return invalid(exc)
            with self._lock:
                self.received.candidate_submissions.append((migration_id, body.candidates))
            return Response(status_code=204)

        @app.post("/api/event/{callback_id}")
        async def event(callback_id: str, request: Request) -> Response:
            if (refused := unauthenticated(request)) is not None:
                return refused
            if (scripted := self._answer("event")) is not None:
                return refuse(scripted)
            try:
                received = StepStatusEvent.model_validate(await request.json())
            except ValidationError as exc:
                return invalid(exc)
            with self._lock:
                self.received.events.append(ReceivedEvent(callback_id, received))
            return JSONResponse({"status": "accepted"}, status_code=202)

        return app

    # ---- waiting for what the Migrator sends --------------------------------------------------

    def wait_for(self, probe: Callable[[], T | None], timeout: float = 10.0, what: str = "") -> T:
        """Poll `probe` until it returns something truthy."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = probe()
            if found:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}; {self.summary()}")
            time.sleep(0.01)

    def summary(self) -> str:
        """What was received, in short: for assertion messages."""
        with self._lock:
            events = [
                f"{r.event.candidate_id}/{r.event.step_name}={r.event.status.value}" for r in self.received.events
            ]
            return (
                f"attempts={self.received.attempts}, announcements={len(self.received.announcements)}, "
                f"candidate submissions={len(self.received.candidate_submissions)}, events={events}"
            )

    def events_for(self, candidate_id: str, step_name: str | None = None) -> list[StepStatusEvent]:
        with self._lock:
            return [
                r.event
                for r in self.received.events
                if r.event.candidate_id == candidate_id and (step_name is None or r.event.step_name == step_name)
            ]

    def wait_for_event(
        self, step_name: str, status: StepStatus, candidate_id: str | None = None, timeout: float = 10.0
    ) -> StepStatusEvent:
        def probe() -> StepStatusEvent | None:
            return next(
                (
                    r.event
                    for r in self.received.events
                    if r.event.step_name == step_name
                    and r.event.status == status
                    and (candidate_id is None or r.event.candidate_id == candidate_id)
                ),
                None,
            )

        return self.wait_for(probe, timeout, f"{status.value} of Step {step_name!r}")

    def wait_for_announcement(self, timeout: float = 10.0) -> MigrationAnnouncement:
        return self.wait_for(lambda: self.received.announcements[-1:], timeout, "an announcement")[0]

    # ---- calling the Migrator as Loom does ------------------------------------------------------

    def dispatch(
        self,
        migrator_url: str,
        migration_id: str,
        step: StepDefinition,
        candidate: Candidate,
        inputs: Mapping[str, str] | None = None,
        dispatch_id: str | None = None,
    ) -> httpx.Response:
        """POST /dispatch-step with what Loom sends: inputs merged into the Candidate's metadata.

        Each call is a new dispatch (a fresh id) unless `dispatch_id` repeats one, as Loom's own retries do.
        """
        request = DispatchStepRequest(
            migration_id=migration_id,
            step_name=step.name,
            candidate=merged_metadata(candidate, dict(inputs or {})),
            config=step.config,
            type=step.type,
            callback_id=run_id(migration_id, candidate.id),
            event_name=f"step-{step.name}",
            migrator_app=step.migrator_app,
            migrator_url=migrator_url,
            dispatch_id=dispatch_id or uuid.uuid4().hex,
        )
        return self.post_signed(f"{migrator_url}/dispatch-step", request.model_dump_json().encode())

    def dry_run(
        self,
        migrator_url: str,
        migration_id: str,
        candidate: Candidate,
        steps: list[StepDefinition],
        inputs: Mapping[str, str] | None = None,
    ) -> DryRunResult:
        request = DryRunRequest(
            migration_id=migration_id, candidate=merged_metadata(candidate, dict(inputs or {})), steps=steps
        )
        response = self.post_signed(f"{migrator_url}/dry-run", request.model_dump_json().encode(), timeout=30)
        response.raise_for_status()
        return DryRunResult.model_validate(response.json())

    def post_signed(
        self, url: str, body: bytes, *, timeout: float = 10, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """POST as Loom does: signed with this fake's token's key (pass `headers` to override, e.g. to forge)."""
        signature = sign(signing_key(self.token), "POST", httpx.URL(url).path, body)
        signed = {"content-type": "application/json", **signature, **(headers or {})}
        return httpx.post(url, content=body, headers=signed, timeout=timeout)

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeLoom:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> FakeLoom:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


__all__ = ["FakeLoom", "Received", "ReceivedEvent"]
