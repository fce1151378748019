"""200 Runs x 5 Steps on the embedded Temporal server, against an instant Migrator; Loom versus a bare workflow.

The Migrator is a real HTTP server in this process that answers each dispatch with 202 and
at once calls back `completed`. Loom's Runs (validated updates, the read model written through
activities into SQLite) are compared with a bare temporalio workflow doing the same
dispatch-and-wait by HTTP (a signal per callback, no persistence), on the same server.
Prints runs/s, steps/s, p50/p95 callback-to-next-dispatch latency and the Loom/bare ratio.
Targets (issue 13): Loom >= 0.9x bare Steps/s at 20 Runs in flight; p95 <= 1.2x bare's p95.

`--via http` (the default) measures Loom as Migrators see it: a Loom process on the same Temporal
server (its own worker, SQLite file and task queue), the Migration announced and each callback
posted to `POST /api/event/{runId}` with a Migrator token, each Run started with `POST .../start`
and an operator token. `--target api` (the default) makes that process `loom api`; `--target app`
the process `make run` starts, the built Reflex app in prod mode with the API inside it, started as
tests/e2e/harness.py does. `--via engine` drives the engine and a worker in this process instead
(no HTTP, no auth, no second process).

Both sides get the same HTTP client bound (MAX_IN_FLIGHT requests at once, as Loom's dispatcher),
the same event loop (uvloop, which uvicorn gives the Loom app) and the same workflow runner:
unsandboxed, as Loom's worker runs its Run (its tests replay every history in the sandbox).

    .venv/bin/python bench/runs.py [--runs 200] [--steps 5] [--concurrency 20] [--via http|engine] [--target api|app]
"""

from __future__ import annotations

import sys
from pathlib import Path

from temporalio import workflow

if not workflow.unsafe.in_sandbox():  # the sandbox re-imports this module to run BareRun
    ROOT = Path(__file__).resolve().parents[1]
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))

with workflow.unsafe.imports_passed_through():
    import argparse
    import asyncio
    import contextlib
    import itertools
    import os
    import secrets
    import statistics
    import subprocess
    import tempfile
    import time
    import uuid
    from collections.abc import AsyncIterator, Awaitable, Callable
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import dataclass
    from datetime import UTC, datetime, timedelta

    import httpx
    import uvicorn
    from pydantic import BaseModel
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route
    from temporalio import activity
    from temporalio.api.enums.v1 import EventType
    from temporalio.client import Client
    from temporalio.common import RetryPolicy
    from temporalio.worker import UnsandboxedWorkflowRunner, Worker

    from loom_backend.domain import (
        Candidate,
        DispatchStepRequest,
        MigrationAnnouncement,
        MigrationManifest,
        StepDefinition,
        StepStatusEvent,
    )
    from loom_backend.execution.activities import RunActivities
    from loom_backend.execution.dev_server import embedded_temporal, free_port
    from loom_backend.execution.engine import TemporalEngine, connect
    from loom_backend.execution.worker import build_worker
    from loom_backend.migrator_client import MAX_IN_FLIGHT, HttpMigratorNotifier
    from loom_backend.outbound_http import pooled_client
    from loom_backend.settings import Settings
    from loom_backend.store.sql_store import SqlStore


# --- CPU per process, read from /proc -----------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """pid and its descendants (a Reflex worker may run children of its own)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                parent = int(stat.rsplit(")", 1)[1].split()[1])
                parents.setdefault(parent, []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, []))
    return tree


def cpu_seconds(pid: int, *, descendants: bool = True) -> float:
    """User + system CPU of pid (and its descendants) so far."""
    total = 0.0
    for member in process_tree(pid) if descendants else [pid]:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime
    return total


def temporal_server_pid() -> int:
    """The embedded Temporal dev server this process started (its child running `temporal server`)."""
    for pid in process_tree(os.getpid())[1:]:
        with contextlib.suppress(OSError):
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"server" in command and any(part.endswith(b"temporal") for part in command):
                return pid
    raise RuntimeError("no Temporal server among this process's children")


class CpuMeter:
    """CPU seconds of the Temporal server, this process (the baseline's worker, the Migrator) and Loom's process."""

    def __init__(self, loom_pid: int | None = None) -> None:
        self.pids = {"temporal": temporal_server_pid(), "bench": os.getpid()}
        if loom_pid is not None:
            self.pids["loom"] = loom_pid
        self.start = self._now()

    def _now(self) -> dict[str, float]:
        # This process's children are the others: its own CPU only.
        return {name: cpu_seconds(pid, descendants=name != "bench") for name, pid in self.pids.items()}

    def per_step_ms(self, steps: int) -> dict[str, float]:
        now = self._now()
        return {name: (now[name] - self.start[name]) * 1000 / steps for name in self.pids}


# --- the bare baseline: dispatch by HTTP, wait for a signal, nothing persisted ----------------

# Requests in flight per HTTP client, as Loom's HttpMigratorNotifier bounds them: the baseline's dispatches
# and the Migrator's callbacks get the same bound.
IN_FLIGHT = MAX_IN_FLIGHT


def bounded_client(timeout: float, base_url: str = "") -> httpx.AsyncClient:
    """The client Loom dispatches with (its pool, IN_FLIGHT connections): the baseline's dispatches and the Migrator's
    callbacks cost what Loom's dispatches cost, so neither side is measured with a slower HTTP stack than the other."""
    client = pooled_client(max_connections=IN_FLIGHT, keepalive_seconds=4.0, timeout=httpx.Timeout(timeout))
    client.base_url = httpx.URL(base_url)
    return client


class BareInput(BaseModel):
    run_id: str
    migrator_url: str
    candidate: Candidate
    steps: list[str]


class BareCallback(BaseModel):
    step_name: str


class BareActivities:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http
        self._turns = asyncio.Semaphore(IN_FLIGHT)

    @activity.defn(name="bare_dispatch")
    async def dispatch(self, request: DispatchStepRequest) -> None:
        async with self._turns:
            response = await self._http.post(
                f"{request.migrator_url}/dispatch-step", json=request.model_dump(mode="json")
            )
        response.raise_for_status()


@workflow.defn(name="BareRun")
class BareRun:
    def __init__(self) -> None:
        self._done: set[str] = set()

    @workflow.run
    async def run(self, input: BareInput) -> None:
        for step in input.steps:
            request = DispatchStepRequest(
                migration_id="bare",
                step_name=step,
                candidate=input.candidate,
                callback_id=input.run_id,
                event_name=step,
                migrator_app="bench",
                migrator_url=input.migrator_url,
            )
            await workflow.execute_activity_method(
                BareActivities.dispatch,
                request,
                start_to_close_timeout=timedelta(seconds=15),
                retry_policy=RetryPolicy(maximum_attempts=5),
            )
            await workflow.wait_condition(lambda step=step: step in self._done)

    @workflow.signal(name="bare_step_done")
    def step_done(self, callback: BareCallback) -> None:
        self._done.add(callback.step_name)


# --- the instant Migrator --------------------------------------------------------------------


class InstantMigrator:
    """Answers 202 and calls back `completed` at once; measures callback-to-next-dispatch latency."""

    def __init__(self) -> None:
        self.callback: Callable[[DispatchStepRequest], Awaitable[None]] | None = None
        self.sent_at: dict[tuple[str, str], float] = {}
        self.latencies: list[float] = []
        self.next_step: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def dispatch_step(self, request: Request) -> Response:
        dispatch = DispatchStepRequest.model_validate(await request.json())
        now = time.perf_counter()
        previous = self.next_step.get(dispatch.step_name)
        if previous is not None and (dispatch.callback_id, previous) in self.sent_at:
            self.latencies.append(now - self.sent_at.pop((dispatch.callback_id, previous)))
        task = asyncio.create_task(self._call_back(dispatch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return Response(status_code=202)

    async def _call_back(self, dispatch: DispatchStepRequest) -> None:
        assert self.callback is not None
        self.sent_at[(dispatch.callback_id, dispatch.step_name)] = time.perf_counter()
        await self.callback(dispatch)

    async def settle(self) -> None:
        """Let callbacks still on their way finish: a dispatch retried after a timeout is called back twice."""
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def reset(self, steps: list[str], callback: Callable[[DispatchStepRequest], Awaitable[None]]) -> None:
        self.callback = callback
        self.sent_at.clear()
        self.latencies.clear()
        self.next_step = {b: a for a, b in itertools.pairwise(steps)}


async def serve(app: Starlette, port: int) -> uvicorn.Server:
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", backlog=2048)
    )
    asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    return server


# --- the two contestants ------------------------------------------------------------------------


class Figures(BaseModel):
    seconds: float
    runs_per_s: float
    steps_per_s: float
    p50_ms: float
    p95_ms: float
    run_ids: list[str] = []
    cpu_ms_per_step: dict[str, float] = {}


def figures(
    seconds: float, runs: int, steps: int, latencies: list[float], run_ids: list[str], cpu: dict[str, float]
) -> Figures:
    ordered = sorted(latencies) or [0.0]
    return Figures(
        seconds=seconds,
        runs_per_s=runs / seconds,
        steps_per_s=runs * steps / seconds,
        p50_ms=statistics.median(ordered) * 1000,
        p95_ms=ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))] * 1000,
        run_ids=run_ids,
        cpu_ms_per_step=cpu,
    )


async def bench_loom(
    client: Client, migrator: InstantMigrator, url: str, data_dir: Path, runs: int, steps: int, concurrency: int
) -> Figures:
    store = SqlStore(f"sqlite:///{data_dir / 'loom.db'}")
    store.upgrade_schema()
    migration_id = f"bench-{uuid.uuid4().hex[:8]}"
    step_defs = [StepDefinition(name=f"step-{i}", migrator_app="bench") for i in range(steps)]
    candidates = [Candidate(id=f"svc-{i:04d}", kind="service") for i in range(runs)]
    store.announce(
        MigrationAnnouncement(
            id=migration_id, name="Bench", description="Bench", steps=step_defs, candidates=candidates, migrator_url=url
        ),
        datetime.now(UTC),
    )
    task_queue = f"bench-loom-{uuid.uuid4().hex[:8]}"
    notifier = HttpMigratorNotifier()
    engine = TemporalEngine(client, task_queue)

    async def complete(dispatch: DispatchStepRequest) -> None:
        event = StepStatusEvent(step_name=dispatch.step_name, candidate_id=dispatch.candidate.id, status="completed")
        await engine.step_event(dispatch.callback_id, event)

    migrator.reset([s.name for s in step_defs], complete)
    async with build_worker(client, task_queue, RunActivities(store, notifier)):
        meter = CpuMeter()  # Loom's worker runs in this process: "bench" holds it
        started = time.perf_counter()

        gate = asyncio.Semaphore(concurrency)

        async def one(candidate: Candidate) -> None:
            async with gate:
                await loom_run(candidate)

        async def loom_run(candidate: Candidate) -> None:
            await asyncio.to_thread(store.claim_candidate, migration_id, candidate.id, {})
            manifest = MigrationManifest(
                migration_id=migration_id, migrator_url=url, candidate=candidate, steps=step_defs
            )
            await engine.start_run(manifest, "bench")
            await client.get_workflow_handle(manifest.run_id).result()

        await asyncio.gather(*(one(c) for c in candidates))
        seconds = time.perf_counter() - started
        cpu = meter.per_step_ms(runs * steps)
    await notifier.aclose()
    page = store.list_events(migration_id, limit=1)
    expected_events = runs * (2 + 2 * steps)
    assert page.total == expected_events, f"{page.total} events, expected {expected_events}"
    return figures(seconds, runs, steps, migrator.latencies, [f"{migration_id}__{c.id}" for c in candidates], cpu)


@dataclass
class LoomProcess:
    """A Loom process serving the API: where it answers, the tokens it accepts, where it logs."""

    base: str
    migrator_token: str
    operator_token: str
    log_path: Path
    alive: Callable[[], bool]


@contextlib.asynccontextmanager
async def loom_api_process(address: str, data_dir: Path, database_url: str | None = None) -> AsyncIterator[LoomProcess]:
    """`loom api` on the same Temporal server, with its own worker, database (SQLite unless told) and task queue."""
    migrator_token, operator_token = (f"loom_{kind}_{secrets.token_urlsafe(32)}" for kind in "mo")
    api_dir = data_dir / "loom-api"
    api_dir.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOM_") and k != "MIGRATOR_URL"}
    env.update(
        LOOM_BOOTSTRAP_TOKENS=f"migrator:bench={migrator_token},operator:bench:admin={operator_token}",
        LOOM_TEMPORAL_ADDRESS=address,
        LOOM_DATA_DIR=str(api_dir),
        LOOM_TEMPORAL_TASK_QUEUE=f"bench-api-{uuid.uuid4().hex[:8]}",
        LOOM_DEMO="false",
    )
    if database_url:
        env["LOOM_DATABASE_URL"] = database_url
    log_path = api_dir / "loom-api.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "loom_backend.cli", "api", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield LoomProcess(
            f"http://127.0.0.1:{port}", migrator_token, operator_token, log_path, lambda: server.poll() is None
        )
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)


@contextlib.asynccontextmanager
async def loom_app_process(address: str, data_dir: Path, database_url: str | None = None) -> AsyncIterator[LoomProcess]:
    """The process `make run` starts: the built Reflex app in prod mode, the API inside it (as the e2e harness)."""
    from tests.e2e.harness import ARTIFACTS, MIGRATOR_TOKEN, OPERATOR_TOKEN, FakeMigrator, loom_app

    log_name = "bench-runs-app.log"
    app = loom_app(data_dir / "loom-app", address, FakeMigrator(), log_name=log_name)
    saved = os.environ.pop("LOOM_DATABASE_URL", None)
    if database_url:  # the harness hands the app this process's environment
        os.environ["LOOM_DATABASE_URL"] = database_url
    try:
        loom = await asyncio.to_thread(app.__enter__)
    finally:
        os.environ.pop("LOOM_DATABASE_URL", None)
        if saved is not None:
            os.environ["LOOM_DATABASE_URL"] = saved
    try:
        yield LoomProcess(loom.url, MIGRATOR_TOKEN, OPERATOR_TOKEN, ARTIFACTS / log_name, lambda: True)
    finally:
        await asyncio.to_thread(app.__exit__, None, None, None)


async def bench_loom_http(
    client: Client,
    migrator: InstantMigrator,
    url: str,
    process: LoomProcess,
    runs: int,
    steps: int,
    concurrency: int,
) -> Figures:
    """Loom behind its HTTP API in its own process: announce, start and callbacks all over HTTP with tokens."""
    turns = asyncio.Semaphore(IN_FLIGHT)
    as_migrator = {"Authorization": f"Bearer {process.migrator_token}"}
    as_operator = {"Authorization": f"Bearer {process.operator_token}"}
    log_path = process.log_path
    log_start = log_path.stat().st_size if log_path.exists() else 0
    async with bounded_client(30.0, process.base) as api:
        for _ in range(300):
            if not process.alive():
                raise RuntimeError(f"the Loom process exited: {log_path.read_text()[-2000:]}")
            try:
                if (await api.get("/api/healthz")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError("the Loom process did not come up in 30 s")
        debug = await api.get("/api/debug/process", headers=as_operator)
        debug.raise_for_status()
        loom_pid = debug.json()["pid"]
        print(f"  Loom process pid {loom_pid} (for py-spy)", flush=True)

        migration_id = f"bench-{uuid.uuid4().hex[:8]}"
        step_names = [f"step-{i}" for i in range(steps)]
        announcement = {
            "id": migration_id,
            "name": "Bench",
            "description": "Bench",
            "steps": [{"name": name, "migratorApp": "bench"} for name in step_names],
            "candidates": [{"id": f"svc-{i:04d}", "kind": "service"} for i in range(runs)],
            "migratorUrl": url,
        }
        (await api.post("/api/registry/announce", json=announcement, headers=as_migrator)).raise_for_status()

        refused: list[str] = []

        async def complete(dispatch: DispatchStepRequest) -> None:
            """Post the callback as a Migrator would: a 5xx or a lost connection is tried again."""
            body = {"stepName": dispatch.step_name, "candidateId": dispatch.candidate.id, "status": "completed"}
            for attempt in range(5):
                try:
                    async with turns:
                        response = await api.post(f"/api/event/{dispatch.callback_id}", json=body, headers=as_migrator)
                except httpx.HTTPError as exc:
                    refused.append(f"{dispatch.callback_id} {dispatch.step_name}: {exc!r}")
                else:
                    if response.status_code == 202:
                        return
                    refused.append(
                        f"{dispatch.callback_id} {dispatch.step_name}: {response.status_code} {response.text}"
                    )
                    if response.status_code < 500:
                        return
                await asyncio.sleep(0.5 * 2**attempt)

        migrator.reset(step_names, complete)
        gate = asyncio.Semaphore(concurrency)

        async def one(candidate_id: str) -> None:
            async with gate:
                path = f"/api/migrations/{migration_id}/candidates/{candidate_id}/start"
                async with turns:
                    response = await api.post(path, json={"inputs": {}}, headers=as_operator)
                response.raise_for_status()
                await client.get_workflow_handle(f"{migration_id}__{candidate_id}").result()

        meter = CpuMeter(loom_pid)
        started = time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.gather(*(one(f"svc-{i:04d}") for i in range(runs))), 600)
        finally:
            for line in refused[:20]:
                print("  callback not accepted:", line, flush=True)
            if refused:
                print(f"  {len(refused)} callback attempt(s) not accepted", flush=True)
        seconds = time.perf_counter() - started
        cpu = meter.per_step_ms(runs * steps)
        await migrator.settle()
        events = await api.get(f"/api/migrations/{migration_id}/events", params={"limit": 1}, headers=as_operator)
        events.raise_for_status()
    with open(log_path, errors="replace") as log:
        log.seek(log_start)
        logged = log.read().splitlines()
    errors = [line for line in logged if "Traceback" in line]
    for line in logged:
        if "refused:" in line:
            print("  app:", line[-240:])
    assert not errors, f"the Loom process logged {len(errors)} tracebacks; see {log_path}"
    expected_events = runs * (2 + 2 * steps)
    assert events.json()["total"] == expected_events, f"{events.json()['total']} events, expected {expected_events}"
    return figures(seconds, runs, steps, migrator.latencies, [f"{migration_id}__svc-{i:04d}" for i in range(runs)], cpu)


async def bench_bare(
    client: Client, migrator: InstantMigrator, url: str, runs: int, steps: int, concurrency: int
) -> Figures:
    task_queue = f"bench-bare-{uuid.uuid4().hex[:8]}"
    names = [f"step-{i}" for i in range(steps)]

    async def complete(dispatch: DispatchStepRequest) -> None:
        handle = client.get_workflow_handle(dispatch.callback_id)
        await handle.signal("bare_step_done", BareCallback(step_name=dispatch.step_name))

    migrator.reset(names, complete)
    async with bounded_client(10.0) as http:
        worker = Worker(
            client,
            task_queue=task_queue,
            workflows=[BareRun],
            activities=[BareActivities(http).dispatch],
            workflow_task_executor=ThreadPoolExecutor(max_workers=4),
            workflow_runner=UnsandboxedWorkflowRunner(),  # as Loom's worker runs its Run
            max_concurrent_activities=200,
            max_concurrent_workflow_tasks=100,
        )
        async with worker:
            meter = CpuMeter()
            started = time.perf_counter()
            prefix = uuid.uuid4().hex[:8]

            gate = asyncio.Semaphore(concurrency)

            async def one(i: int) -> None:
                async with gate:
                    await bare_run(i)

            async def bare_run(i: int) -> None:
                run_id = f"bare-{prefix}__svc-{i:04d}"
                candidate = Candidate(id=f"svc-{i:04d}", kind="service")
                handle = await client.start_workflow(
                    BareRun.run,
                    BareInput(run_id=run_id, migrator_url=url, candidate=candidate, steps=names),
                    id=run_id,
                    task_queue=task_queue,
                )
                await handle.result()

            await asyncio.gather(*(one(i) for i in range(runs)))
            seconds = time.perf_counter() - started
    return figures(
        seconds,
        runs,
        steps,
        migrator.latencies,
        [f"bare-{prefix}__svc-{i:04d}" for i in range(runs)],
        meter.per_step_ms(runs * steps),
    )


async def explain(client: Client, workflow_ids: list[str]) -> None:
    """Where a Run's time goes: the median gap between consecutive events of its history, by event type."""
    gaps: dict[str, list[float]] = {}
    for workflow_id in workflow_ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        previous = None
        for event in history.events:
            name = EventType.Name(event.event_type).removeprefix("EVENT_TYPE_")
            at = event.event_time.ToDatetime().timestamp()
            if previous is not None:
                gaps.setdefault(f"{previous[0]} -> {name}", []).append(at - previous[1])
            previous = (name, at)
    for pair, values in sorted(gaps.items(), key=lambda item: -sum(item[1])):
        print(
            f"    {pair:70} n={len(values):4}  median {statistics.median(values) * 1000:6.1f} ms  "
            f"total/Run {sum(values) * 1000 / len(workflow_ids):6.1f} ms"
        )


def show(name: str, f: Figures) -> None:
    print(
        f"{name:5} {f.seconds:6.1f} s  {f.runs_per_s:6.1f} runs/s  {f.steps_per_s:7.1f} steps/s  "
        f"callback->next dispatch p50 {f.p50_ms:6.1f} ms  p95 {f.p95_ms:6.1f} ms"
    )
    if f.cpu_ms_per_step:
        print("      CPU-ms per Step: " + ", ".join(f"{k} {v:.1f}" for k, v in f.cpu_ms_per_step.items()))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=0, help="Runs in flight at once; 0 starts all at once")
    parser.add_argument(
        "--via", choices=["http", "engine"], default="http", help="Loom's callbacks through its HTTP API or the engine"
    )
    parser.add_argument(
        "--target", choices=["api", "app"], default="api", help="with --via http: `loom api`, or the `make run` app"
    )
    parser.add_argument("--explain", type=int, default=0, help="print where N Runs' time went, from their histories")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="loom-bench-") as tmp:
        data_dir = Path(tmp)
        settings = Settings(data_dir=data_dir)
        async with embedded_temporal(settings, port=free_port(), data_dir=data_dir) as address:
            client = await connect(settings, address)
            migrator = InstantMigrator()
            port = free_port()
            server = await serve(
                Starlette(routes=[Route("/dispatch-step", migrator.dispatch_step, methods=["POST"])]), port
            )
            url = f"http://127.0.0.1:{port}"
            try:
                concurrency = args.concurrency or args.runs
                print(
                    f"{args.runs} Runs x {args.steps} Steps, at most {concurrency} in flight, "
                    f"Loom via {args.via}" + (f" to {args.target}" if args.via == "http" else "") + ", "
                    f"embedded Temporal dev server (SQLite, WAL), {type(asyncio.get_running_loop()).__module__}"
                )
                bare = await bench_bare(client, migrator, url, args.runs, args.steps, concurrency)
                show("bare", bare)
                if args.explain:
                    await explain(client, bare.run_ids[: args.explain])
                if args.via == "http":
                    process = loom_app_process if args.target == "app" else loom_api_process
                    async with process(address, data_dir) as loom_process:
                        loom = await bench_loom_http(
                            client, migrator, url, loom_process, args.runs, args.steps, concurrency
                        )
                else:
                    loom = await bench_loom(client, migrator, url, data_dir, args.runs, args.steps, concurrency)
                show("loom", loom)
                if args.explain:
                    await explain(client, loom.run_ids[: args.explain])
                ratio = loom.steps_per_s / bare.steps_per_s
                print(
                    f"ratio loom/bare (steps/s) {ratio:.2f} (target >= 0.9); p95 loom/bare "
                    f"{loom.p95_ms / bare.p95_ms:.2f} (target <= 1.2)"
                )
                if loom.cpu_ms_per_step and bare.cpu_ms_per_step:
                    bare_cpu, loom_cpu = sum(bare.cpu_ms_per_step.values()), sum(loom.cpu_ms_per_step.values())
                    busy = bare_cpu * bare.steps_per_s / 10 / (os.cpu_count() or 1)
                    print(
                        f"CPU-ms per Step, all processes: bare {bare_cpu:.1f}, loom {loom_cpu:.1f} "
                        f"(bare/loom {bare_cpu / loom_cpu:.2f}); the bare run kept {busy:.0f}% of the cores busy"
                    )
            finally:
                server.should_exit = True
                await asyncio.sleep(0.2)


if __name__ == "__main__":
    # Import this file as the module `runs`, so the sandbox can re-import the bare workflow by name.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import uvloop
    from runs import main as _main

    # The Loom app runs on uvloop (uvicorn picks it), so the baseline and the Migrator do too.
    uvloop.run(_main())
