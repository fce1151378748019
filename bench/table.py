"""The Candidate table's first page, server-side: `.venv/bin/python bench/table.py [--candidates 10000] [--events
100000] [--samples 30] [--postgres URL]`.

Seeds a Migration of 10,000 Candidates in every state with 100,000 events straight into SQLite (a temporary file)
and PostgreSQL (a throwaway database on LOOM_TEST_POSTGRES_URL or --postgres), then asks the real route through
httpx's ASGI transport for the first page (limit 50) under several filter and sort combinations, and prints p50/p95
per combination. Target: every one under 300 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from sqlalchemy import bindparam, insert, update

from loom_backend.api import create_api
from loom_backend.auth import AccessControl
from loom_backend.domain import (
    EventType,
    MigrationAnnouncement,
    Role,
    StepResult,
    StepStatus,
    TokenKind,
    failure_group_key,
    run_id,
    run_progress,
)
from loom_backend.service import LoomService
from loom_backend.store.auth_store import SqlAuthStore
from loom_backend.store.sql_store import CANDIDATES, STEP_EVENTS, STEP_RESULTS, SqlStore
from tests.fakes import FakeEngine, FakeNotifier
from tests.postgres import fresh_database

M = "bench-table"
STEPS = ["bump", "review", "verify-health"]
TEAMS = ["payments", "search", "core", "growth", "platform"]
ERRORS = ["CI runner timed out after {n}s", "chart lint failed: '{c}' values.yaml", "merge conflict in PR #{n}"]
NOW = datetime.now(UTC)
TIMEOUT_KEY = failure_group_key("bump", ERRORS[0].format(n=1, c="x"))
QUERIES = [
    "",
    "sort=-timeInStatus",
    "stepStatus=failed",
    "step=bump&stepStatus=open&sort=-timeInStatus",
    "status=running&inStatusLongerThan=1d&sort=lastEvent",
    "stuck=true",
    "stuck=true&sort=-timeInStatus",
    "checks=failing&review=changes_requested",
    "mergeable=true&prOlderThan=2d&sort=pr",
    "failure=timed out&sort=metadata.team",
    f"failureGroup={TIMEOUT_KEY}",
    "metadata=team:payments&sort=-lastEvent",
    "q=svc-09&sort=step",
    "needsAttention=true&kind=service",
]


def seed(store: SqlStore, n: int, events: int) -> None:
    """Candidates, their Runs' Step results, their progress and `events` events, written in bulk."""
    rng = random.Random(1)
    store.announce(
        MigrationAnnouncement.model_validate(
            {
                "id": M,
                "name": "Table bench",
                "description": "10k Candidates",
                "steps": [{"name": s, "migratorApp": "bench"} for s in STEPS],
                "candidates": [
                    {
                        "id": f"svc-{i:05d}",
                        "kind": "service" if i % 3 else "application",
                        "metadata": {"team": TEAMS[i % 5]},
                    }
                    for i in range(n)
                ],
                "migratorUrl": "http://127.0.0.1:9",
            }
        ),
        NOW,
    )
    results: list[dict[str, Any]] = []
    progress: list[dict[str, Any]] = []
    started = [f"svc-{i:05d}" for i in range(n) if i % 10]  # 90% have a Run
    per_run = max(1, events // len(started))
    event_rows: list[dict[str, Any]] = []
    for cid in started:
        rid = run_id(M, cid)
        steps_done = rng.randint(0, 2)
        run: list[StepResult] = []
        at = NOW - timedelta(hours=rng.uniform(1, 24 * 14))
        for k, name in enumerate(STEPS[: steps_done + 1]):
            last = k == steps_done
            status = (
                rng.choice([StepStatus.IN_PROGRESS, StepStatus.OPEN, StepStatus.FAILED, StepStatus.AWAITING_REVIEW])
                if last
                else StepStatus.COMPLETED
            )
            meta: dict[str, str] = {}
            if status is StepStatus.FAILED:
                meta["error"] = rng.choice(ERRORS).format(n=rng.randint(1, 900), c=cid)
            pr = f"https://git.example/pr/{cid}" if name == "bump" else None
            if pr:
                meta.update(
                    checks=rng.choice(["passing", "failing", "pending"]),
                    review=rng.choice(["approved", "changes_requested", "pending"]),
                    mergeable=rng.choice(["true", "false"]),
                )
            run.append(
                StepResult(
                    step_name=name,
                    candidate_id=cid,
                    status=status,
                    metadata=meta,
                    pr_url=pr,
                    started_at=at,
                    updated_at=at + timedelta(minutes=30),
                    completed_at=None if status.waiting else at + timedelta(minutes=30),
                )
            )
            at += timedelta(hours=rng.uniform(0.5, 30))
        for r in run:
            results.append(
                {
                    "run_id": rid,
                    "migration_id": M,
                    **r.model_dump(mode="python", by_alias=False),
                    "status": r.status.value,
                }
            )
        p = run_progress(run, None, NOW).model_dump(mode="python", by_alias=False)
        for key in ("step_status", "checks", "review"):
            p[key] = p[key].value if p[key] is not None else None
        times = sorted(NOW - timedelta(minutes=rng.uniform(1, 60 * 24 * 14)) for _ in range(per_run))
        progress.append({"b_id": cid, **p, "last_event_at": times[-1], "status": "running"})
        for j, when in enumerate(times):
            step = run[min(j * len(run) // per_run, len(run) - 1)]
            completed = j == per_run - 1 and not step.status.waiting
            event_rows.append(
                {
                    "key": f"{rid}:{j}",
                    "run_id": rid,
                    "migration_id": M,
                    "candidate_id": cid,
                    "step_name": step.step_name,
                    "event_type": (EventType.STEP_COMPLETED if completed else EventType.STEP_UPDATED).value,
                    "status": step.status.value,
                    "actor": None,
                    "duration_ms": rng.randint(60_000, 3_600_000) if completed else None,
                    "metadata": {},
                    "created_at": when,
                }
            )
    with store.engine.begin() as connection:
        for start in range(0, len(results), 2000):
            connection.execute(insert(STEP_RESULTS), results[start : start + 2000])
        for start in range(0, len(event_rows), 5000):
            connection.execute(insert(STEP_EVENTS), event_rows[start : start + 5000])
        statement = update(CANDIDATES).where(CANDIDATES.c.migration_id == M, CANDIDATES.c.id == bindparam("b_id"))
        for start in range(0, len(progress), 2000):
            connection.execute(statement, progress[start : start + 2000])
    store.rebuild_rollups()


async def measure(store: SqlStore, samples: int) -> list[tuple[str, float, float, int]]:
    access = AccessControl(SqlAuthStore(store.engine))
    _, secret = access.create_token(TokenKind.OPERATOR, "bench", Role.VIEWER)
    service = LoomService.over(store, FakeEngine(), FakeNotifier(), access)
    transport = httpx.ASGITransport(app=create_api(lambda: service))
    figures = []
    headers = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://loom", headers=headers) as client:
        for query in [*QUERIES, "failure-groups"]:
            path = f"/api/migrations/{M}/failure-groups" if query == "failure-groups" else None
            url = path or f"/api/migrations/{M}/candidates?limit=50&{query}"
            timings = []
            total = 0
            for _ in range(samples + 2):
                began = time.perf_counter()
                response = await client.get(url)
                timings.append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200, response.text
                body = response.json()
                total = len(body["groups"]) if path else int(response.headers["X-Total-Count"])
            timings = sorted(timings[2:])  # the first two warm caches and compile statements
            p95 = timings[min(len(timings) - 1, round(0.95 * (len(timings) - 1)))]
            figures.append((query or "(no filter)", statistics.median(timings), p95, total))
    return figures


def report(name: str, figures: list[tuple[str, float, float, int]]) -> None:
    print(f"\n{name}: first page (limit 50), ms")
    print(f"  {'query':58} {'p50':>7} {'p95':>7} {'matches':>8}")
    for query, p50, p95, total in figures:
        flag = "" if p95 < 300 else "  OVER 300 ms"
        print(f"  {query:58} {p50:7.1f} {p95:7.1f} {total:8}{flag}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--candidates", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--postgres", default=os.environ.get("LOOM_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    with ExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory())
        databases = {"SQLite": f"sqlite:///{folder}/loom.db"}
        if args.postgres:
            databases["PostgreSQL"] = stack.enter_context(fresh_database(args.postgres, "loom_bench"))
        for name, url in databases.items():
            store = SqlStore(url)
            store.upgrade_schema()
            began = time.perf_counter()
            seed(store, args.candidates, args.events)
            print(
                f"{name}: seeded {args.candidates:,} Candidates, {args.events:,} events in {time.perf_counter() - began:.1f} s"
            )
            report(name, asyncio.run(measure(store, args.samples)))
            store.engine.dispose()


if __name__ == "__main__":
    main()
