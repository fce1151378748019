"""Rollout benchmark, run by hand: a rollout of N Candidates under maxRunning must hold the cap, lose little
throughput against starting the same Runs directly, and fill a slot soon after a Run frees it.

    .venv/bin/python bench/rollout.py [--candidates 1000] [--max-running 50] [--steps 3] [--target app|api]
                                      [--database-url postgresql+psycopg://...]

As bench/scale.py: the embedded Temporal server, bench/runs.py's instant Migrator (a real HTTP server that answers
202 and calls back `completed` at once), and the `make run` app (`--target app`, the default) or `loom api`, with
its default rollout poll (LOOM_ROLLOUT_POLL_SECONDS). SQLite in a temporary directory unless `--database-url`
names a PostgreSQL server, where a throwaway database is made. Two Migrations of N Candidates x 3 Steps in the
same Loom process:

A. every Run started at once over `POST .../start` (16 requests in flight); Steps/s from the first start to the
   last Run's completion.
B. a rollout, `{maxRunning}` and nothing else (one wave, no gate); Steps/s from `POST .../rollout/start` to the
   last Run's completion. The running Candidates (`X-Total-Count` of `?status=running`) are sampled every 100 ms;
   the event log's `run_started` / `run_completed` times give the peak of open Runs too.

Finish -> next start: with the cap full, the k-th Run to finish frees the slot that the (maxRunning + k)-th Run
to start fills, so the gap is start[maxRunning + k] - finish[k] over the times sorted (each from the event log,
the Run's own clock). That is how long a freed slot stood empty. (The gap since the latest finish before each
start would understate it: when finishes bunch up, a slot freed early looks filled by a finish that came later.)

Targets (the issue): peak <= maxRunning at every sample; B's Steps/s within 10% of A's; the gap's p50 and p95 are
reported. Prints each figure with PASS or FAIL, the machine's load average, and where the rollout's time went (from
its Temporal history: how often it looked, the signals the Runs sent it, each of its activities' median time).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
from runs import (  # noqa: E402
    IN_FLIGHT,
    InstantMigrator,
    LoomProcess,
    bounded_client,
    loom_api_process,
    loom_app_process,
    serve,
)
from starlette.applications import Starlette  # noqa: E402
from starlette.routing import Route  # noqa: E402
from temporalio.client import Client  # noqa: E402

from loom_backend.domain import DispatchStepRequest  # noqa: E402
from loom_backend.execution.dev_server import embedded_temporal, free_port  # noqa: E402
from loom_backend.execution.engine import connect  # noqa: E402
from loom_backend.rollout import rollout_id  # noqa: E402
from loom_backend.settings import Settings  # noqa: E402
from tests.postgres import fresh_database  # noqa: E402

SAMPLE_SECONDS = 0.1


@contextlib.contextmanager
def database(url: str | None) -> Iterator[str | None]:
    """None for SQLite (the data dir's own file); a throwaway database on the named PostgreSQL server otherwise."""
    if url is None:
        yield None
        return
    with fresh_database(url, prefix="loom_rollout") as fresh:
        yield fresh


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def peak_open(starts: list[datetime], finishes: list[datetime]) -> int:
    """The most Runs open at once by the event log's times (a finish at the same instant as a start goes first)."""
    moments = sorted([(t, 1) for t in starts] + [(t, -1) for t in finishes])
    open_now = peak = 0
    for _, change in moments:
        open_now += change
        peak = max(peak, open_now)
    return peak


def slot_gaps(starts: list[datetime], finishes: list[datetime], cap: int) -> list[float]:
    """Seconds each freed slot stood empty: the (cap + k)-th start less the k-th finish (see the docstring)."""
    starts, finishes = sorted(starts), sorted(finishes)
    return [(start - finish).total_seconds() for start, finish in zip(starts[cap:], finishes, strict=False)]


async def where_the_rollout_went(temporal: Client, migration_id: str, seconds: float) -> str:
    """From the rollout's Temporal history (every run of its continue-as-new chain): how often it looked, the
    signals it got, and each activity's median time from scheduled to completed."""
    durations: dict[str, list[float]] = collections.defaultdict(list)
    signals = 0
    run_id: str | None = None
    while True:
        history = await temporal.get_workflow_handle(rollout_id(migration_id), run_id=run_id).fetch_history()
        scheduled: dict[int, tuple[str, float]] = {}
        for event in history.events:
            at = event.event_time.ToDatetime().timestamp()
            if event.HasField("activity_task_scheduled_event_attributes"):
                scheduled[event.event_id] = (event.activity_task_scheduled_event_attributes.activity_type.name, at)
            elif event.HasField("activity_task_completed_event_attributes"):
                name, began = scheduled[event.activity_task_completed_event_attributes.scheduled_event_id]
                durations[name].append(at - began)
            elif event.HasField("workflow_execution_signaled_event_attributes"):
                signals += 1
        run_id = history.events[0].workflow_execution_started_event_attributes.continued_execution_run_id or None
        if run_id is None:
            break
    looks = len(durations["loom_rollout_observe"])
    medians = ", ".join(
        f"{name.removeprefix('loom_rollout_')} {statistics.median(times) * 1000:.0f} ms (x{len(times)})"
        for name, times in sorted(durations.items())
    )
    return f"{looks} looks (one per {seconds / max(1, looks) * 1000:.0f} ms), {signals} signals; median {medians}"


class Bench:
    def __init__(self, api: httpx.AsyncClient, loom: LoomProcess, migrator: InstantMigrator, url: str) -> None:
        self.api = api
        self.migrator = migrator
        self.url = url
        self.as_migrator = {"Authorization": f"Bearer {loom.migrator_token}"}
        self.as_operator = {"Authorization": f"Bearer {loom.operator_token}"}
        self.turns = asyncio.Semaphore(IN_FLIGHT)

    async def announce(self, label: str, candidates: int, steps: list[str]) -> str:
        migration_id = f"rollout-{label}-{uuid.uuid4().hex[:6]}"
        announcement = {
            "id": migration_id,
            "name": f"Rollout bench {label}",
            "description": "bench/rollout.py",
            "steps": [{"name": name, "migratorApp": "bench"} for name in steps],
            "candidates": [{"id": f"svc-{i:05d}", "kind": "service"} for i in range(candidates)],
            "migratorUrl": self.url,
        }
        (await self.api.post("/api/registry/announce", json=announcement, headers=self.as_migrator)).raise_for_status()

        async def complete(dispatch: DispatchStepRequest) -> None:
            body = {"stepName": dispatch.step_name, "candidateId": dispatch.candidate.id, "status": "completed"}
            for attempt in range(6):
                with contextlib.suppress(httpx.HTTPError):
                    async with self.turns:
                        response = await self.api.post(
                            f"/api/event/{dispatch.callback_id}", json=body, headers=self.as_migrator
                        )
                    if response.status_code < 500:
                        return
                await asyncio.sleep(0.5 * 2**attempt)
            print(f"  callback given up: {dispatch.callback_id} {dispatch.step_name}", flush=True)

        self.migrator.reset(steps, complete)
        return migration_id

    async def count(self, migration_id: str, status: str) -> int:
        response = await self.api.get(
            f"/api/migrations/{migration_id}/candidates",
            params={"status": status, "limit": 1},
            headers=self.as_operator,
        )
        response.raise_for_status()
        return int(response.headers["X-Total-Count"])

    async def times(self, migration_id: str, event_type: str) -> list[datetime]:
        found: list[datetime] = []
        while True:
            params: dict[str, str | int] = {"type": event_type, "limit": 1000, "offset": len(found)}
            response = await self.api.get(
                f"/api/migrations/{migration_id}/events", params=params, headers=self.as_operator
            )
            page = response.json()
            found.extend(datetime.fromisoformat(e["createdAt"]) for e in page["events"])
            if len(found) >= page["total"] or not page["events"]:
                return found

    async def sample_until_done(self, migration_id: str, total: int, timeout: float) -> tuple[float, list[int]]:
        """Sample the running Candidates every 100 ms until all `total` completed; the seconds it took and samples."""
        began = time.perf_counter()
        samples: list[int] = []
        while time.perf_counter() - began < timeout:
            tick = time.perf_counter()
            running, completed = await asyncio.gather(
                self.count(migration_id, "running"), self.count(migration_id, "completed")
            )
            samples.append(running)
            if completed >= total:
                return time.perf_counter() - began, samples
            await asyncio.sleep(max(0.0, SAMPLE_SECONDS - (time.perf_counter() - tick)))
        raise TimeoutError(f"{migration_id}: not every Candidate completed within {timeout:.0f} s")

    async def direct(self, candidates: int, steps: list[str]) -> float:
        """Phase A: every Run started at once; Steps/s to drain."""
        migration_id = await self.announce("direct", candidates, steps)

        async def start(candidate_id: str) -> None:
            async with self.turns:
                response = await self.api.post(
                    f"/api/migrations/{migration_id}/candidates/{candidate_id}/start",
                    json={"inputs": {}},
                    headers=self.as_operator,
                )
            response.raise_for_status()

        began = time.perf_counter()
        starting = asyncio.gather(*(start(f"svc-{i:05d}") for i in range(candidates)))
        seconds, _ = await self.sample_until_done(migration_id, candidates, timeout=3600)
        await starting
        seconds = max(seconds, time.perf_counter() - began)
        await self.migrator.settle()
        return candidates * len(steps) / seconds

    async def rollout(self, candidates: int, steps: list[str], cap: int) -> tuple[float, float, list[int], str]:
        """Phase B: the same Runs by a rollout of {maxRunning: cap}; Steps/s, the samples, and the Migration."""
        migration_id = await self.announce("rollout", candidates, steps)
        path = f"/api/migrations/{migration_id}/rollout"
        (await self.api.put(path, json={"maxRunning": cap}, headers=self.as_operator)).raise_for_status()
        (await self.api.post(f"{path}/start", json={}, headers=self.as_operator)).raise_for_status()
        seconds, samples = await self.sample_until_done(migration_id, candidates, timeout=3600)
        await self.migrator.settle()
        return candidates * len(steps) / seconds, seconds, samples, migration_id


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


async def measure(bench: Bench, temporal: Client, args: argparse.Namespace) -> None:
    steps = [f"step-{i}" for i in range(args.steps)]
    cap = args.max_running
    load = os.getloadavg()
    a = await bench.direct(args.candidates, steps)
    print(f"A direct:  {args.candidates:,} Runs x {args.steps} Steps started at once: {a:.1f} Steps/s", flush=True)
    b, seconds, samples, migration_id = await bench.rollout(args.candidates, steps, cap)
    starts = await bench.times(migration_id, "run_started")
    finishes = await bench.times(migration_id, "run_completed")
    gaps = slot_gaps(starts, finishes, cap)
    sampled, logged = max(samples), peak_open(starts, finishes)
    ratio = b / a
    print(f"B rollout: maxRunning {cap}: {b:.1f} Steps/s; B/A {ratio:.2f} {verdict(ratio >= 0.9)} (target >= 0.90)")
    print(
        f"  running Candidates, {len(samples)} samples every {SAMPLE_SECONDS * 1000:.0f} ms: peak {sampled} "
        f"{verdict(sampled <= cap)} (cap {cap}); by the event log's times: peak {logged} open"
    )
    if gaps:
        print(
            f"  finish -> next start ({len(gaps)} slots freed and filled): p50 {statistics.median(gaps) * 1000:.0f} ms, "
            f"p95 {percentile(gaps, 0.95) * 1000:.0f} ms, max {max(gaps) * 1000:.0f} ms"
        )
    print(f"  the rollout: {await where_the_rollout_went(temporal, migration_id, seconds)}")
    if len(starts) != args.candidates or len(finishes) != args.candidates:
        print(f"  FAIL: {len(starts)} run_started and {len(finishes)} run_completed for {args.candidates} Candidates")
    print(
        f"  load average at the start {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; at the end "
        + " ".join(f"{x:.1f}" for x in os.getloadavg()),
        flush=True,
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=1_000)
    parser.add_argument("--max-running", type=int, default=50)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--target", choices=["app", "api"], default="app")
    parser.add_argument("--database-url", default=None, help="a PostgreSQL server; a throwaway database is made on it")
    args = parser.parse_args()
    assert 1 <= args.max_running <= args.candidates, "--max-running must be between 1 and --candidates"
    with tempfile.TemporaryDirectory(prefix="loom-rollout-") as tmp:
        data_dir = Path(tmp)
        settings = Settings(data_dir=data_dir)
        async with embedded_temporal(settings, port=free_port(), data_dir=data_dir) as address:
            temporal = await connect(settings, address)
            migrator = InstantMigrator()
            port = free_port()
            server = await serve(
                Starlette(routes=[Route("/dispatch-step", migrator.dispatch_step, methods=["POST"])]), port
            )
            process = loom_app_process if args.target == "app" else loom_api_process
            try:
                with database(args.database_url) as url:
                    async with (
                        process(address, data_dir, database_url=url) as loom,
                        bounded_client(120.0, loom.base) as api,
                    ):
                        await ready(api, loom)
                        print(f"{'PostgreSQL' if url else 'SQLite'}, {args.target}", flush=True)
                        await measure(Bench(api, loom, migrator, f"http://127.0.0.1:{port}"), temporal, args)
            finally:
                server.should_exit = True
                await asyncio.sleep(0.2)


async def ready(api: httpx.AsyncClient, loom: LoomProcess) -> None:
    for _ in range(600):
        if not loom.alive():
            raise RuntimeError(f"the Loom process exited: {loom.log_path.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if (await api.get("/api/healthz")).status_code == 200:
                return
        await asyncio.sleep(0.1)
    raise RuntimeError("the Loom process did not answer within 60 s")


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
