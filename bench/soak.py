"""Soak benchmark, run by hand, on the process users run: `.venv/bin/python bench/soak.py [--minutes 30 --tabs 10]`.

Starts what `make run` starts (a Temporal dev server; the built Reflex app in prod mode with the API inside it,
SQLite in a temporary data dir, LOOM_DEMO=false) as tests/e2e/harness.py does, and bench/runs.py's instant Migrator
(a real HTTP server that calls back `completed` at once). Then:

1. fresh: a batch of Runs x Steps, all started at once (after a 10-Run warm-up); Steps/s and the app's CPU-ms per
   Step (the app's process tree, from /proc);
2. soak: V board tabs open in Chromium for N minutes on one Migration's board, sampling the app's RSS, threads and
   `sys.path` length (GET /api/debug/process), and the CPU the tabs' polling alone costs;
3. after: the same batch again, the tabs still open (so their polling is in its CPU; printed net of it too);
4. closed: once more after the tabs closed and their watch loops stopped: a leak stays, the tabs' live work goes.

Target (issue 13): after 30 minutes with 10 tabs, Steps/s and CPU per Step within 10% of fresh, RSS growth < 50 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
from playwright.async_api import async_playwright  # noqa: E402
from runs import InstantMigrator, bounded_client, cpu_seconds, process_tree, serve  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.routing import Route  # noqa: E402
from temporalio.client import Client  # noqa: E402

from loom_backend.domain import DispatchStepRequest  # noqa: E402
from loom_backend.execution.dev_server import free_port  # noqa: E402
from loom_backend.execution.engine import connect  # noqa: E402
from loom_backend.settings import Settings  # noqa: E402
from loom_ui.state import CHECK_SECONDS, DISCONNECTED_GRACE_SECONDS  # noqa: E402
from tests.e2e.harness import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    E2E_OPERATOR,
    MIGRATOR_AUTH,
    OPERATOR_AUTH,
    FakeMigrator,
    Loom,
    loom_app,
    temporal_server,
)

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
SAMPLE_SECONDS = 10.0
MB = 1024 * 1024


# --- the app process, read from /proc ------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError, IndexError, ValueError):
            total += int(Path(f"/proc/{member}/statm").read_text().split()[1]) * PAGE_SIZE
    return total


# --- one batch of Runs -------------------------------------------------------------------------


@dataclass
class Batch:
    seconds: float
    steps: int
    cpu_seconds: float
    p95_ms: float

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds

    @property
    def cpu_ms_per_step(self) -> float:
        return self.cpu_seconds * 1000 / self.steps

    def line(self, name: str) -> str:
        return (
            f"{name:6} {self.steps} Steps in {self.seconds:6.1f} s: {self.steps_per_s:6.1f} Steps/s, "
            f"{self.cpu_ms_per_step:6.1f} app CPU-ms/Step, p95 callback->next dispatch {self.p95_ms:5.0f} ms"
        )


@dataclass
class Bench:
    loom: Loom
    api: httpx.AsyncClient
    temporal: Client
    migrator: InstantMigrator
    migrator_url: str
    app_pid: int
    turns: asyncio.Semaphore
    held: set[str] = field(default_factory=set)

    async def figures(self) -> dict[str, Any]:
        response = await self.api.get("/api/debug/process", headers=OPERATOR_AUTH)
        response.raise_for_status()
        return response.json()

    async def announce(self, migration_id: str, candidates: int, steps: list[str]) -> None:
        body = {
            "id": migration_id,
            "name": f"Soak {migration_id}",
            "description": "Soak benchmark",
            "steps": [{"name": name, "migratorApp": "fake"} for name in steps],
            "candidates": [{"id": f"svc-{i:04d}", "kind": "service"} for i in range(candidates)],
            "migratorUrl": self.migrator_url,
        }
        (await self.api.post("/api/registry/announce", json=body, headers=MIGRATOR_AUTH)).raise_for_status()

    async def complete(self, dispatch: DispatchStepRequest) -> None:
        """The Migrator's callback: a 5xx or a lost connection is tried again, as a Migrator would. A held
        Candidate gets none: its bench posts its callbacks itself."""
        if dispatch.candidate.id in self.held:
            return
        body = {"stepName": dispatch.step_name, "candidateId": dispatch.candidate.id, "status": "completed"}
        for attempt in range(5):
            with contextlib.suppress(httpx.HTTPError):
                async with self.turns:
                    response = await self.api.post(
                        f"/api/event/{dispatch.callback_id}", json=body, headers=MIGRATOR_AUTH
                    )
                if response.status_code < 500:
                    if response.status_code != 202:
                        print(f"  callback refused: {response.status_code} {response.text[:200]}", flush=True)
                    return
            await asyncio.sleep(0.5 * 2**attempt)

    async def batch(self, runs: int, steps: int) -> Batch:
        """runs x steps on a Migration of their own, every Run started at once."""
        migration_id = f"soak-{uuid.uuid4().hex[:8]}"
        names = [f"step-{i}" for i in range(steps)]
        await self.announce(migration_id, runs, names)
        return await self.drive(migration_id, names, [f"svc-{i:04d}" for i in range(runs)])

    async def drive(self, migration_id: str, names: list[str], candidate_ids: list[str]) -> Batch:
        """A Run for each of these Candidates, all started at once; drained when every Run's workflow completed."""
        self.migrator.reset(names, self.complete)

        async def one(candidate_id: str) -> None:
            path = f"/api/migrations/{migration_id}/candidates/{candidate_id}/start"
            async with self.turns:
                response = await self.api.post(path, json={"inputs": {}}, headers=OPERATOR_AUTH)
            response.raise_for_status()
            await self.temporal.get_workflow_handle(f"{migration_id}__{candidate_id}").result()

        cpu = cpu_seconds(self.app_pid)
        started = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(one(cid) for cid in candidate_ids)), 1800)
        seconds = time.perf_counter() - started
        cpu = cpu_seconds(self.app_pid) - cpu
        await self.migrator.settle()
        latencies = sorted(self.migrator.latencies) or [0.0]
        p95 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))] * 1000
        return Batch(seconds, len(candidate_ids) * len(names), cpu, p95)


# --- the soak --------------------------------------------------------------------------------------


async def open_tabs(bench: Bench, tabs: int, playwright: Any) -> Any:
    """V tabs on one operator's board, each showing the watched Migration's counts (its watch loop is running)."""
    watched = f"watched-{uuid.uuid4().hex[:6]}"
    await bench.announce(watched, 50, ["bump", "rollout"])
    browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    await asyncio.to_thread(bench.loom.add_user, E2E_OPERATOR, "operator")
    cookie = await asyncio.to_thread(bench.loom.session_cookie, E2E_OPERATOR)
    context = await browser.new_context(
        viewport={"width": 1280, "height": 800}, storage_state={"cookies": [cookie], "origins": []}
    )
    for _ in range(tabs):
        page = await context.new_page()
        await page.goto(f"{bench.loom.url}/migrations/{watched}")
        await page.wait_for_selector(
            '[data-testid="column"][data-status="not_started"] [data-testid="column-count"]:text-is("50")'
        )
    return browser


def sample_line(label: str, bench: Bench, figures: dict[str, Any]) -> str:
    return (
        f"  {label:>8}  app RSS {rss_bytes(bench.app_pid) / MB:7.1f} MB  threads {figures['threads']:3}  "
        f"sys.path {figures['sysPathEntries']:5}"
    )


async def soak(loom: Loom, address: str, args: argparse.Namespace) -> None:
    migrator = InstantMigrator()
    port = free_port()
    server = await serve(Starlette(routes=[Route("/dispatch-step", migrator.dispatch_step, methods=["POST"])]), port)
    async with bounded_client(60.0, loom.url) as api:
        bench = Bench(
            loom=loom,
            api=api,
            temporal=await connect(Settings(), address),
            migrator=migrator,
            migrator_url=f"http://127.0.0.1:{port}",
            app_pid=0,
            turns=asyncio.Semaphore(16),
        )
        first = await bench.figures()
        bench.app_pid = first["pid"]
        print(
            f"app pid {bench.app_pid}; {args.runs} Runs x {args.steps} Steps per batch; {args.tabs} tabs for {args.minutes} min"
        )
        print(sample_line("start", bench, first), flush=True)
        await bench.batch(min(10, args.runs), args.steps)  # warm-up: first-call costs are not what a soak measures
        fresh = await bench.batch(args.runs, args.steps)
        print(fresh.line("fresh"), flush=True)
        before = await bench.figures()
        rss_before = rss_bytes(bench.app_pid)
        print(sample_line("0 s", bench, before), flush=True)
        async with async_playwright() as playwright:
            browser = await open_tabs(bench, args.tabs, playwright)
            started = time.monotonic()
            idle_cpu = cpu_seconds(bench.app_pid)
            rss_peak = rss_before
            ticking: dict[str, Any] | None = None  # the first sample with tabs open: a first tick resolves the app once
            while (elapsed := time.monotonic() - started) < args.minutes * 60:
                await asyncio.sleep(min(SAMPLE_SECONDS, args.minutes * 60 - elapsed))
                figures = await bench.figures()
                ticking = ticking or figures
                rss_peak = max(rss_peak, rss_bytes(bench.app_pid))
                print(sample_line(f"{time.monotonic() - started:.0f} s", bench, figures), flush=True)
            polling = (cpu_seconds(bench.app_pid) - idle_cpu) / (time.monotonic() - started)
            soaked = await bench.figures()
            ticking = ticking or soaked
            rss_soaked = rss_bytes(bench.app_pid)
            after = await bench.batch(args.runs, args.steps)
            print(after.line("after"), flush=True)
            net = (after.cpu_seconds - polling * after.seconds) * 1000 / after.steps
            print(
                f"       the open tabs alone cost the app {polling * 1000:.0f} CPU-ms/s (measured over the soak, no Runs)"
            )
            print(f"       after, net of that: {net:.1f} app CPU-ms/Step", flush=True)
            final = await bench.figures()
            rss_final = rss_bytes(bench.app_pid)
            rss_peak = max(rss_peak, rss_final)
            print(sample_line("after", bench, final), flush=True)
            await browser.close()
        # A closed tab's watch loop stops after the grace period; then what stayed behind is the process itself.
        await asyncio.sleep(DISCONNECTED_GRACE_SECONDS + 2 * CHECK_SECONDS)
        closed = await bench.batch(args.runs, args.steps)
        print(closed.line("closed"), flush=True)
        closed_figures = await bench.figures()
        print(sample_line("closed", bench, closed_figures), flush=True)
        server.should_exit = True
    throughput = after.steps_per_s / fresh.steps_per_s
    cpu = after.cpu_ms_per_step / fresh.cpu_ms_per_step
    growth = (rss_final - rss_before) / MB
    print(
        f"after/fresh: Steps/s {throughput:.2f} (target >= 0.90), CPU-ms/Step {cpu:.2f} (target <= 1.10; "
        f"net of the tabs' polling {net / fresh.cpu_ms_per_step:.2f}); "
        f"RSS {rss_before / MB:.1f} -> {rss_soaked / MB:.1f} after the soak -> {rss_final / MB:.1f} MB after the batch "
        f"(+{growth:.1f} MB, peak {rss_peak / MB:.1f}; target < 50 MB); "
        f"sys.path {before['sysPathEntries']} -> {ticking['sysPathEntries']} with tabs open -> "
        f"{soaked['sysPathEntries']} after the soak -> {final['sysPathEntries']}; "
        f"threads {before['threads']} -> {final['threads']}"
    )
    print(f"threads by name: before {before.get('threadGroups')}; after the last batch {final.get('threadGroups')}")
    print(
        f"closed/fresh (tabs closed again): Steps/s {closed.steps_per_s / fresh.steps_per_s:.2f}, "
        f"CPU-ms/Step {closed.cpu_ms_per_step / fresh.cpu_ms_per_step:.2f}; sys.path {closed_figures['sysPathEntries']}"
    )
    ok = throughput >= 0.9 and cpu <= 1.1 and growth < 50 and final["sysPathEntries"] == ticking["sysPathEntries"]
    print("within target" if ok else "OFF TARGET")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--tabs", type=int, default=10)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="loom-soak-") as tmp,
        temporal_server(Path(tmp)) as address,
        loom_app(Path(tmp), address, FakeMigrator(), log_name="soak-app.log") as loom,
    ):
        asyncio.run(soak(loom, address, args))


if __name__ == "__main__":
    main()
