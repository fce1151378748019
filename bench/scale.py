"""Scale benchmark, run by hand: a 10,000-Candidate Migration with 1,000 Runs started at once must drain with
nothing lost, on SQLite and on PostgreSQL.

    .venv/bin/python bench/scale.py [--candidates 10000] [--runs 1000] [--steps 3] [--database sqlite|postgres|both]
                                    [--target app|api]

On the embedded Temporal server with bench/runs.py's instant Migrator, against the `make run` app (`--target app`,
the default) or `loom api`. Every Run is started at once over HTTP (the client holds 16 requests in flight, as a
Migrator's would); drained when every Run's workflow has completed. Then checked through the API: every started
Candidate completed, each Step's `step_completed` recorded exactly once, one `run_completed` per Run. Prints Steps/s
and the Loom process's peak RSS. PostgreSQL is a throwaway database on LOOM_TEST_POSTGRES_URL's server.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
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
from soak import rss_bytes  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.routing import Route  # noqa: E402
from temporalio.client import Client  # noqa: E402

from loom_backend.domain import DispatchStepRequest  # noqa: E402
from loom_backend.execution.dev_server import embedded_temporal, free_port  # noqa: E402
from loom_backend.execution.engine import connect  # noqa: E402
from loom_backend.settings import Settings  # noqa: E402
from tests.postgres import fresh_database  # noqa: E402

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MB = 1024 * 1024


@contextlib.contextmanager
def database_url(kind: str) -> Iterator[str | None]:
    """None for SQLite (the data dir's own file); a throwaway PostgreSQL database otherwise."""
    if kind == "sqlite":
        yield None
        return
    with fresh_database(os.environ.get("LOOM_TEST_POSTGRES_URL", DEFAULT_POSTGRES), prefix="loom_scale") as url:
        yield url


async def drain(
    temporal: Client, migrator: InstantMigrator, url: str, loom: LoomProcess, args: argparse.Namespace
) -> str:
    as_migrator = {"Authorization": f"Bearer {loom.migrator_token}"}
    as_operator = {"Authorization": f"Bearer {loom.operator_token}"}
    turns = asyncio.Semaphore(IN_FLIGHT)
    async with bounded_client(120.0, loom.base) as api:
        pid = (await api.get("/api/debug/process", headers=as_operator)).json()["pid"]
        migration_id = f"scale-{uuid.uuid4().hex[:8]}"
        names = [f"step-{i}" for i in range(args.steps)]
        ids = [f"svc-{i:05d}" for i in range(args.candidates)]
        announcement = {
            "id": migration_id,
            "name": "Scale",
            "description": "Scale benchmark",
            "steps": [{"name": name, "migratorApp": "bench"} for name in names],
            "candidates": [{"id": cid, "kind": "service"} for cid in ids],
            "migratorUrl": url,
        }
        announced = time.perf_counter()
        (await api.post("/api/registry/announce", json=announcement, headers=as_migrator)).raise_for_status()
        announce_seconds = time.perf_counter() - announced

        async def complete(dispatch: DispatchStepRequest) -> None:
            body = {"stepName": dispatch.step_name, "candidateId": dispatch.candidate.id, "status": "completed"}
            for attempt in range(6):
                with contextlib.suppress(httpx.HTTPError):
                    async with turns:
                        response = await api.post(f"/api/event/{dispatch.callback_id}", json=body, headers=as_migrator)
                    if response.status_code < 500:
                        if response.status_code != 202:
                            print(f"  callback refused: {response.status_code} {response.text[:200]}", flush=True)
                        return
                await asyncio.sleep(0.5 * 2**attempt)
            print(f"  callback given up: {dispatch.callback_id} {dispatch.step_name}", flush=True)

        migrator.reset(names, complete)

        async def one(candidate_id: str) -> None:
            path = f"/api/migrations/{migration_id}/candidates/{candidate_id}/start"
            async with turns:
                response = await api.post(path, json={"inputs": {}}, headers=as_operator)
            response.raise_for_status()
            await temporal.get_workflow_handle(f"{migration_id}__{candidate_id}").result()

        peak = rss_bytes(pid)
        started = time.perf_counter()
        runs = asyncio.ensure_future(asyncio.gather(*(one(cid) for cid in ids[: args.runs])))
        while not runs.done():
            peak = max(peak, rss_bytes(pid))
            await asyncio.wait([runs], timeout=0.5)
        await runs
        seconds = time.perf_counter() - started
        await migrator.settle()
        peak = max(peak, rss_bytes(pid))

        async def every(event_type: str) -> list[dict]:
            events: list[dict] = []
            while True:
                params: dict[str, str | int] = {"type": event_type, "limit": 1000, "offset": len(events)}
                page = (
                    await api.get(f"/api/migrations/{migration_id}/events", params=params, headers=as_operator)
                ).json()
                events.extend(page["events"])
                if len(events) >= page["total"] or not page["events"]:
                    return events

        completed_steps = collections.Counter((e["candidateId"], e["stepName"]) for e in await every("step_completed"))
        completed_runs = collections.Counter(e["candidateId"] for e in await every("run_completed"))
        params = {"status": "completed", "limit": 1}
        done = int(
            (await api.get(f"/api/migrations/{migration_id}/candidates", params=params, headers=as_operator)).headers[
                "X-Total-Count"
            ]
        )
        total = int(
            (
                await api.get(f"/api/migrations/{migration_id}/candidates", params={"limit": 1}, headers=as_operator)
            ).headers["X-Total-Count"]
        )
    expected_steps = {(cid, name) for cid in ids[: args.runs] for name in names}
    lost = expected_steps - set(completed_steps)
    twice = [key for key, n in completed_steps.items() if n != 1]
    problems = []
    if lost:
        problems.append(f"{len(lost)} Step results missing")
    if twice:
        problems.append(f"{len(twice)} Step results recorded more than once")
    if set(completed_steps) - expected_steps:
        problems.append("Step results for Candidates that were not started")
    if len(completed_runs) != args.runs or any(n != 1 for n in completed_runs.values()):
        problems.append(f"{len(completed_runs)} run_completed Candidates, expected {args.runs} once each")
    if done != args.runs or total != args.candidates:
        problems.append(f"{done} of {total} Candidates completed, expected {args.runs} of {args.candidates}")
    verdict = "nothing lost" if not problems else "LOST: " + "; ".join(problems)
    return (
        f"announce {args.candidates:,} Candidates {announce_seconds:.1f} s; {args.runs:,} Runs x {args.steps} Steps "
        f"drained in {seconds:.1f} s: {args.runs * args.steps / seconds:.1f} Steps/s; "
        f"Loom process peak RSS {peak / MB:.0f} MB; {verdict}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=1_000)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--target", choices=["app", "api"], default="app")
    args = parser.parse_args()
    assert args.runs <= args.candidates, "--runs may not exceed --candidates"
    databases = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    with tempfile.TemporaryDirectory(prefix="loom-scale-") as tmp:
        data_dir = Path(tmp)
        settings = Settings(data_dir=data_dir)
        async with embedded_temporal(settings, port=free_port(), data_dir=data_dir) as address:
            temporal = await connect(settings, address)
            migrator = InstantMigrator()
            port = free_port()
            server = await serve(
                Starlette(routes=[Route("/dispatch-step", migrator.dispatch_step, methods=["POST"])]), port
            )
            try:
                for kind in databases:
                    process = loom_app_process if args.target == "app" else loom_api_process
                    run_dir = data_dir / kind
                    run_dir.mkdir()
                    with database_url(kind) as url:
                        async with process(address, run_dir, database_url=url) as loom:
                            line = await drain(temporal, migrator, f"http://127.0.0.1:{port}", loom, args)
                    print(f"{kind:8} ({args.target}) {line}", flush=True)
            finally:
                server.should_exit = True
                await asyncio.sleep(0.2)


if __name__ == "__main__":
    import uvloop

    uvloop.run(main())
