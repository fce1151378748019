"""Viewers benchmark, run by hand: `.venv/bin/python bench/viewers.py [--tabs 20 --candidates 5000 --runs 100]`.

What open boards cost the process users run (the built Reflex app with the API inside, started as bench/soak.py does,
SQLite by default or `--database-url postgresql+psycopg://...`, an empty database of its own): one Migration of N
Candidates, and in ONE app process three phases, each a batch of R Runs x S Steps all started at once against
bench/runs.py's instant Migrator, while 0, 1 and T board tabs (Chromium) show that Migration's board. Per phase:
Steps/s, the app's CPU-ms per Step (its process tree, from /proc), SQL statements per second and per Step (counted
in the app: GET /api/debug/process `sqlStatements`), and callback->DOM latency: every PROBE_SECONDS a probe
Candidate's Run (held at its first Step, first on the board) gets an `open` callback with a new PR link, and every
tab stamps the moment its DOM shows it (a MutationObserver, as bench/board.py does).

VIEWERS_DEBUG=1 prints each probe's per-tab latencies as they come, each with when the tab's websocket brought the new
link (how much of it was the app's, how much the browser's drawing).

Targets (the "Scale out, proven" issue): from 0 to 20 tabs, SQL statements/s and CPU per Step grow by less than 20%;
callback->DOM p95 under 150 ms with 1 tab and under 300 ms with 20.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
from board import OBSERVE, percentile  # noqa: E402
from playwright.async_api import Page, async_playwright  # noqa: E402
from runs import InstantMigrator, bounded_client, serve  # noqa: E402
from soak import Batch, Bench  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.routing import Route  # noqa: E402

from loom_backend.execution.dev_server import free_port  # noqa: E402
from loom_backend.execution.engine import connect  # noqa: E402
from loom_backend.settings import Settings  # noqa: E402
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

PROBE = "svc-0000"  # first by position, so first in the Running column of every tab
PROBE_SECONDS = 1.0
PROBE_TIMEOUT_S = 30.0
SETTLE_SECONDS = 5.0  # after tabs open: their first loads are not what a phase measures
TARGET_GROWTH = 1.20
TARGET_P95_MS = {1: 150.0, 20: 300.0}
CARD = f'[data-testid="candidate-card"][data-candidate="{PROBE}"]'
DEBUG = bool(os.environ.get("VIEWERS_DEBUG"))
# With VIEWERS_DEBUG: each tab stamps when a websocket message first names a probe's PR link, by its number.
FRAMES = r"""
const Socket = window.WebSocket;
window.__loomFrames = {};
window.WebSocket = class extends Socket { constructor(...args) { super(...args); this.addEventListener("message", e => {
  for (const link of (typeof e.data === "string" && e.data.match(/example\.test\/pr\/\d+/g)) || [])
    window.__loomFrames[link.split("/").pop()] ??= Date.now();
}); } };
"""


@dataclass
class Phase:
    tabs: int
    batch: Batch
    statements: int
    latencies_ms: list[float]
    missed: int
    load: tuple[float, float]  # load average (1 min) before and after the phase
    machine_busy: float  # the share of all cores busy over the phase, whoever used them

    @property
    def statements_per_s(self) -> float:
        return self.statements / self.batch.seconds

    @property
    def statements_per_step(self) -> float:
        return self.statements / self.batch.steps

    def p(self, q: float) -> float:
        return percentile(self.latencies_ms, q) if self.latencies_ms else float("nan")

    def line(self) -> str:
        b = self.batch
        probe = (
            f"callback->DOM p50 {statistics.median(self.latencies_ms):4.0f} ms p95 {self.p(95):4.0f} ms "
            f"max {max(self.latencies_ms):5.0f} ms ({len(self.latencies_ms)} samples"
            + (f", {self.missed} not shown within {PROBE_TIMEOUT_S:.0f} s" if self.missed else "")
            + ")"
            if self.latencies_ms
            else f"no callback->DOM samples ({self.missed} not shown within {PROBE_TIMEOUT_S:.0f} s)"
        )
        return (
            f"{self.tabs:3} tabs: {b.steps} Steps in {b.seconds:5.1f} s, {b.steps_per_s:5.1f} Steps/s, "
            f"{b.cpu_ms_per_step:5.1f} app CPU-ms/Step, {self.statements_per_s:6.0f} SQL/s "
            f"({self.statements_per_step:5.1f}/Step); {probe}; load {self.load[0]:.1f} -> {self.load[1]:.1f}, "
            f"cores {self.machine_busy:.0%} busy, the app {self.app_share:.0%} of them"
        )

    @property
    def app_share(self) -> float:
        return self.batch.cpu_seconds / (self.batch.seconds * CORES)


def load_average() -> float:
    return os.getloadavg()[0]


CORES = os.cpu_count() or 1


def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, from /proc/stat: how noisy a phase was."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


class Probe:
    """The probe Candidate's Run, held at its first Step: each `open` callback carries a new PR link to look for."""

    def __init__(self, bench: Bench, migration_id: str, step: str) -> None:
        self.bench, self.migration_id, self.step, self.sent = bench, migration_id, step, 0

    async def post(self) -> tuple[int, float]:
        """Post the next PR link; its number and when it was posted (epoch seconds, as the tabs' Date.now())."""
        self.sent += 1
        body = {
            "stepName": self.step,
            "candidateId": PROBE,
            "status": "open",
            "metadata": {"prUrl": f"https://example.test/pr/{self.sent}"},
        }
        posted = time.time()
        response = await self.bench.api.post(
            f"/api/event/{self.migration_id}__{PROBE}", json=body, headers=MIGRATOR_AUTH
        )
        response.raise_for_status()
        return self.sent, posted

    async def ready(self) -> None:
        """Started, dispatched and taking callbacks (the first callback before the dispatch is refused)."""
        path = f"/api/migrations/{self.migration_id}/candidates/{PROBE}/start"
        (await self.bench.api.post(path, json={"inputs": {}}, headers=OPERATOR_AUTH)).raise_for_status()
        for _ in range(200):
            try:
                await self.post()
                return
            except httpx.HTTPStatusError:
                await asyncio.sleep(0.1)
        raise RuntimeError("the probe Run never took a callback")

    async def sample(self, pages: list[Page]) -> tuple[list[float], int]:
        """One callback; how long each tab took to show it (ms), and how many did not within the timeout."""
        link = f'{CARD} [data-testid="pr-link"][href="https://example.test/pr/{self.sent + 1}"]'
        await asyncio.gather(*(page.evaluate(OBSERVE, link) for page in pages))
        number, posted = await self.post()
        frames: list[str] = []

        async def seen(page: Page) -> float | None:
            try:
                await page.wait_for_selector(link, timeout=PROBE_TIMEOUT_S * 1000, state="attached")
            except Exception:
                return None
            if DEBUG:
                frame = await page.evaluate(f"window.__loomFrames[{number}]")
                frames.append(f"{frame - posted * 1000:.0f}" if frame else "?")
            return float(await page.evaluate("window.__loomSeen")) - posted * 1000

        stamps = await asyncio.gather(*(seen(page) for page in pages))
        if DEBUG:
            shown = ", ".join("-" if s is None else f"{s:.0f}" for s in stamps)
            print(f"    probe {self.sent}: DOM [{shown}] ms; websocket [{', '.join(frames)}] ms", flush=True)
        return [s for s in stamps if s is not None], sum(s is None for s in stamps)


async def phase(bench: Bench, probe: Probe, pages: list[Page], names: list[str], candidates: list[str]) -> Phase:
    """One batch while these tabs watch; the probe posts (and the tabs time it) every PROBE_SECONDS until it drains."""
    load_before, jiffies = load_average(), machine_jiffies()
    before = (await bench.figures())["sqlStatements"]
    latencies: list[float] = []
    missed = 0
    driving = asyncio.create_task(bench.drive(probe.migration_id, names, candidates))
    while not driving.done():  # with no tabs too: every phase carries the probe's callbacks
        started = time.monotonic()
        if pages:
            shown, lost = await probe.sample(pages)
            latencies += shown
            missed += lost
        else:
            await probe.post()
        await asyncio.sleep(max(0.0, PROBE_SECONDS - (time.monotonic() - started)))
    batch = await driving
    after = (await bench.figures())["sqlStatements"]
    busy, total = (now - then for now, then in zip(machine_jiffies(), jiffies, strict=True))
    return Phase(len(pages), batch, after - before, latencies, missed, (load_before, load_average()), busy / total)


async def open_tabs(context: Any, url: str, pages: list[Page], count: int) -> None:
    """Tabs on the board until there are `count`, each showing the probe's card (its watch loop is running)."""
    while len(pages) < count:
        page = await context.new_page()
        await page.goto(url)
        await page.wait_for_selector(f'[data-testid="column"][data-status="running"] {CARD}', timeout=60_000)
        pages.append(page)


def ratio_line(name: str, value: float, target: float) -> tuple[str, bool]:
    ok = value < target
    return f"{name} {value:.2f} (target < {target:.2f}) {'PASS' if ok else 'FAIL'}", ok


async def viewers(loom: Loom, address: str, args: argparse.Namespace) -> bool:
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
            held={PROBE},
        )
        bench.app_pid = (await bench.figures())["pid"]
        migration_id = f"viewers-{uuid.uuid4().hex[:6]}"
        names = [f"step-{i}" for i in range(args.steps)]
        started = time.perf_counter()
        await bench.announce(migration_id, args.candidates, names)
        print(
            f"app pid {bench.app_pid}, {args.database}; {args.candidates:,} Candidates announced in "
            f"{time.perf_counter() - started:.1f} s; {args.runs} Runs x {args.steps} Steps per phase; "
            f"phases 0, 1, {args.tabs} tabs; load average {os.getloadavg()}",
            flush=True,
        )
        migrator.reset(names, bench.complete)
        probe = Probe(bench, migration_id, names[0])
        await probe.ready()
        ids = iter(f"svc-{i:04d}" for i in range(1, args.candidates))
        await bench.drive(migration_id, names, [next(ids) for _ in range(min(10, args.runs))])  # warm-up
        url = f"{loom.url}/migrations/{migration_id}"
        phases: list[Phase] = []
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            await asyncio.to_thread(loom.add_user, E2E_OPERATOR, "operator")
            cookie = await asyncio.to_thread(loom.session_cookie, E2E_OPERATOR)
            context = await browser.new_context(
                viewport={"width": 1280, "height": 800}, storage_state={"cookies": [cookie], "origins": []}
            )
            if DEBUG:
                await context.add_init_script(FRAMES)
            pages: list[Page] = []
            for tabs in (0, 1, args.tabs):
                await open_tabs(context, url, pages, tabs)
                await asyncio.sleep(SETTLE_SECONDS if tabs else 0)
                result = await phase(bench, probe, pages, names, [next(ids) for _ in range(args.runs)])
                phases.append(result)
                print(result.line(), flush=True)
            await browser.close()
        server.should_exit = True
    none, one, many = phases
    checks = [
        ratio_line(
            f"SQL statements/s {many.tabs} tabs / 0 tabs", many.statements_per_s / none.statements_per_s, TARGET_GROWTH
        ),
        ratio_line(
            f"app CPU-ms/Step {many.tabs} tabs / 0 tabs",
            many.batch.cpu_ms_per_step / none.batch.cpu_ms_per_step,
            TARGET_GROWTH,
        ),
    ]
    for result, target in ((one, TARGET_P95_MS[1]), (many, TARGET_P95_MS[20])):
        ok = result.p(95) < target and not result.missed
        checks.append(
            (
                f"callback->DOM p95 with {result.tabs} tabs {result.p(95):.0f} ms (target < {target:.0f}) "
                f"{'PASS' if ok else 'FAIL'}",
                ok,
            )
        )
    print(
        f"(SQL statements per Step {many.tabs} tabs / 0 tabs "
        f"{many.statements_per_step / none.statements_per_step:.2f}; Steps/s {many.batch.steps_per_s / none.batch.steps_per_s:.2f})"
    )
    for text, _ in checks:
        print(text)
    ok = all(passed for _, passed in checks)
    print("PASS" if ok else "FAIL")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tabs", type=int, default=20)
    parser.add_argument("--candidates", type=int, default=5000)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--database-url", help="PostgreSQL (an empty database); SQLite in a temporary dir otherwise")
    args = parser.parse_args()
    if args.candidates < 1 + 10 + 3 * args.runs:
        parser.error("--candidates must leave a probe, a warm-up of 10 and three batches of --runs")
    if args.database_url:  # the harness hands the app this process's environment; add_user reads it too
        os.environ["LOOM_DATABASE_URL"] = args.database_url
    args.database = "PostgreSQL" if args.database_url else "SQLite"
    with (
        tempfile.TemporaryDirectory(prefix="loom-viewers-") as tmp,
        temporal_server(Path(tmp)) as address,
        loom_app(Path(tmp), address, FakeMigrator(), log_name="viewers-app.log") as loom,
    ):
        ok = asyncio.run(viewers(loom, address, args))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
