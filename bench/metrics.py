"""Time every metrics route over 1,000,000 events, on a fresh SQLite file and a fresh PostgreSQL database.

The history: 20 Migrations of 2,500 Candidates (50,000), six Steps each (one a manual review), Runs
started over the last 90 days, ~6% of dispatches failing (a third of those at dispatch) and being
retried, some Runs cancelled or still in progress, until the event log holds exactly 1,000,000 rows.
Rows go in with executemany (SQLite) or COPY (PostgreSQL), then `SqlStore.rebuild_rollups()` fills the
metrics rollups from them (what append_event keeps up to date one event at a time). Each route is then
called through the real API in-process (httpx ASGITransport) with a viewer's token, median of 5 after a
warm-up, and compared with a bare `SELECT count(*) FROM step_events` in the same process. Target: every
metrics route under 300 ms.

    .venv/bin/python bench/metrics.py [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test] [--events N]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import random
import secrets
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loom_backend.api import create_api  # noqa: E402
from loom_backend.auth import AccessControl, ProvisionedToken, Role, TokenKind  # noqa: E402
from loom_backend.service import LoomService  # noqa: E402
from loom_backend.store.auth_store import SqlAuthStore  # noqa: E402
from loom_backend.store.sql_store import SqlStore  # noqa: E402

MIGRATIONS = 20
CANDIDATES_PER_MIGRATION = 2_500
STEPS = ["bump", "build", "test", "review", "merge", "deploy"]
DAYS = 90
TARGET_MS = 300.0
EVENT_COLUMNS = (
    "key",
    "run_id",
    "migration_id",
    "candidate_id",
    "step_name",
    "event_type",
    "status",
    "actor",
    "duration_ms",
    "metadata",
    "created_at",
)
DISPATCH_ERROR = "Dispatch to the Migrator failed after 5 attempt(s): Migrator at http://m could not be reached"


class History:
    """Generates the event log, the Candidates' final statuses and the current step results, deterministically."""

    def __init__(self, now: datetime, events: int, seed: int = 7) -> None:
        self.now = now
        self.limit = events
        self.rng = random.Random(seed)
        self.count = 0
        self.status: dict[tuple[str, str], str] = {}
        self.results: dict[tuple[str, str], tuple[str, str, str, str, str, datetime]] = {}

    def events(self) -> Iterator[tuple]:
        return itertools.islice(self._events(), self.limit)

    def _events(self) -> Iterator[tuple]:
        rng, start = self.rng, self.now - timedelta(days=DAYS)
        candidates = [
            (f"mig-{m:02d}", f"svc-{c:05d}") for m in range(MIGRATIONS) for c in range(CANDIDATES_PER_MIGRATION)
        ]
        rng.shuffle(candidates)
        rounds = 0
        while self.count < self.limit:
            for mid, cid in candidates:
                if self.count >= self.limit:
                    return
                if rounds == 0 and rng.random() < 0.08:
                    continue  # never started
                # Runs start more often as the Migration ramps up (later days are busier).
                at = start + timedelta(seconds=DAYS * 86_400 * (rng.random() ** 0.6))
                yield from self._run(mid, cid, at, rounds)
            rounds += 1

    def _event(self, mid, cid, step, event_type, at, status=None, duration=None, metadata=None, actor=None):
        self.count += 1
        return (
            f"bench:{self.count}",
            f"{mid}__{cid}",
            mid,
            cid,
            step,
            event_type,
            status,
            actor,
            duration,
            json.dumps(metadata or {}),
            at,
        )

    def _run(self, mid: str, cid: str, at: datetime, rounds: int) -> Iterator[tuple]:
        rng, e = self.rng, self._event
        yield e(mid, cid, None, "run_started", at, actor="ana")
        self.status[(mid, cid)] = "running"
        for step in STEPS:
            attempt = 0
            while True:
                attempt += 1
                if at > self.now or self.count >= self.limit:
                    return
                yield e(mid, cid, step, "step_dispatched", at, "in_progress", metadata={"attempt": str(attempt)})
                started = at
                at += timedelta(milliseconds=rng.randint(50, 3_000))
                roll = rng.random()
                if roll < 0.02:
                    at += timedelta(seconds=30)
                    duration = int((at - started).total_seconds() * 1000)
                    yield e(mid, cid, step, "step_completed", at, "failed", duration, {"error": DISPATCH_ERROR})
                elif roll < 0.06:
                    duration = int((at - started).total_seconds() * 1000)
                    yield e(mid, cid, step, "step_completed", at, "failed", duration, {"error": "CI failed: tests"})
                else:
                    if step == "review":
                        yield e(mid, cid, step, "step_updated", at, "awaiting_review")
                        if rng.random() < 0.03 or at > self.now:
                            self._current(mid, cid, step, "awaiting_review", at)
                            return
                        at += timedelta(minutes=rng.randint(5, 2_000))
                        yield e(mid, cid, step, "review_approved", at, actor="ana")
                        status = "completed"
                    else:
                        yield e(mid, cid, step, "step_updated", at, "open", metadata={"prUrl": "http://pr"})
                        at += timedelta(minutes=rng.randint(1, 600))
                        status = "merged"
                    duration = int((at - started).total_seconds() * 1000)
                    yield e(mid, cid, step, "step_completed", at, status, duration)
                    break
                # A failed Step waits for a Retry, or the Run is cancelled.
                at += timedelta(minutes=rng.randint(1, 300))
                if rng.random() < 0.15:
                    yield e(mid, cid, None, "run_cancelled", at, actor="ana")
                    self.status[(mid, cid)] = "not_started"
                    return
                if rng.random() < 0.05:
                    self._current(mid, cid, step, "failed", at)
                    return
                yield e(mid, cid, step, "step_retried", at, actor="ana")
        at += timedelta(seconds=1)
        if at <= self.now:
            yield e(mid, cid, None, "run_completed", at)
            self.status[(mid, cid)] = "completed"

    def _current(self, mid: str, cid: str, step: str, status: str, at: datetime) -> None:
        self.results[(mid, cid)] = (f"{mid}__{cid}", step, mid, cid, status, at)


def _announce(store: SqlStore, now: datetime) -> None:
    from loom_backend.domain import MigrationAnnouncement

    for m in range(MIGRATIONS):
        store.announce(
            MigrationAnnouncement.model_validate(
                {
                    "id": f"mig-{m:02d}",
                    "name": f"Bench migration {m}",
                    "description": "bench",
                    "steps": [
                        {"name": s, "migratorApp": "bench", **({"type": "manual-review"} if s == "review" else {})}
                        for s in STEPS
                    ],
                    "candidates": [
                        {"id": f"svc-{c:05d}", "kind": "service", "metadata": {"team": f"team-{c % 30}"}}
                        for c in range(CANDIDATES_PER_MIGRATION)
                    ],
                    "migratorUrl": "http://127.0.0.1:9",
                }
            ),
            now - timedelta(days=DAYS + 1),
        )


def load(store: SqlStore, history: History) -> float:
    """Bulk-load the history; returns seconds spent."""
    began = time.perf_counter()
    _announce(store, history.now)
    raw = store.engine.raw_connection()
    try:
        cursor = raw.cursor()
        if store.engine.dialect.name == "postgresql":
            with cursor.copy(f"COPY step_events ({', '.join(EVENT_COLUMNS)}) FROM STDIN") as copy:
                for row in history.events():
                    copy.write_row(row)
        else:
            insert = f"INSERT INTO step_events ({', '.join(EVENT_COLUMNS)}) VALUES ({', '.join('?' * 11)})"
            batch: list[tuple] = []
            for row in history.events():
                batch.append((*row[:10], row[10].strftime("%Y-%m-%d %H:%M:%S.%f")))
                if len(batch) == 20_000:
                    cursor.executemany(insert, batch)
                    batch.clear()
            cursor.executemany(insert, batch)
        raw.commit()
    finally:
        raw.close()
    with store.engine.begin() as connection:
        by_status: dict[str, list[dict]] = {}
        for (mid, cid), status in history.status.items():
            by_status.setdefault(status, []).append({"m": mid, "c": cid})
        for status, keys in by_status.items():
            connection.execute(
                text("UPDATE candidates SET status = :s WHERE migration_id = :m AND id = :c"),
                [{"s": status, **k} for k in keys],
            )
        connection.execute(
            text(
                "INSERT INTO step_results (run_id, step_name, migration_id, candidate_id, status, metadata, "
                "started_at, updated_at) VALUES (:r, :s, :m, :c, :st, '{}', :t, :t)"
            ),
            [
                {"r": r, "s": s, "m": m, "c": c, "st": st, "t": t}
                for r, s, m, c, st, t in history.results.values()
                if history.status.get((m, c)) == "running"
            ],
        )
    # The bulk load went around append_event, so the metrics rollups are recomputed from the log, as
    # the schema upgrade does for an existing database.
    rebuilt = time.perf_counter()
    store.rebuild_rollups()
    print(f"   metrics rollups rebuilt from the log in {time.perf_counter() - rebuilt:.1f} s")
    # What autovacuum would have done by the time anyone looks: statistics, and (PostgreSQL) the visibility
    # map that lets aggregates read the indexes alone.
    with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE" if store.engine.dialect.name == "postgresql" else "ANALYZE"))
    return time.perf_counter() - began


ROUTES = [
    "/api/metrics/overview",
    "/api/metrics/overview?migrationId=mig-03",
    "/api/metrics/steps",
    "/api/metrics/steps?migrationId=mig-03",
    "/api/metrics/timeline?days=90",
    "/api/metrics/timeline?days=365&migrationId=mig-03",
    "/api/metrics/failures?limit=50",
    "/api/metrics/failures?limit=50&migrationId=mig-03",
    "/api/metrics/burndown",
    "/api/metrics/burndown?migrationId=mig-03",
    "/api/prometheus",
]
EXTRA_ROUTES = [
    "/api/migrations/mig-03/candidates.csv",
    "/api/events?limit=100",
    "/api/events?actor=nobody&limit=100",
    "/api/migrations/mig-03/events.csv",
]


async def time_routes(store: SqlStore, now: datetime) -> dict[str, float]:
    access = AccessControl(SqlAuthStore(store.engine))
    service = LoomService.over(store, engine=None, notifier=None, access=access, clock=lambda: now)  # type: ignore[arg-type]
    token = "loom_o_" + secrets.token_urlsafe(32)
    access.provision_token(ProvisionedToken(TokenKind.OPERATOR, "bench", Role.VIEWER, token))
    app = create_api(lambda: service)
    timings: dict[str, float] = {}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://loom",
        timeout=120,
        headers={"Authorization": f"Bearer {token}"},
    ) as api:
        for route in ROUTES + EXTRA_ROUTES:
            response = await api.get(route)
            assert response.status_code == 200, (route, response.text[:300])
            samples = []
            for _ in range(5):
                began = time.perf_counter()
                response = await api.get(route)
                samples.append((time.perf_counter() - began) * 1000)
            timings[route] = statistics.median(samples)
    return timings


def baseline_ms(store: SqlStore) -> float:
    samples = []
    with store.engine.connect() as connection:
        connection.execute(text("SELECT count(*) FROM step_events")).scalar_one()
        for _ in range(5):
            began = time.perf_counter()
            connection.execute(text("SELECT count(*) FROM step_events")).scalar_one()
            samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


def bench(name: str, store: SqlStore, events: int) -> bool:
    now = datetime.now(UTC).replace(microsecond=0)
    store.upgrade_schema()
    history = History(now, events)
    seconds = load(store, history)
    with store.engine.connect() as connection:
        total = connection.execute(text("SELECT count(*) FROM step_events")).scalar_one()
    print(f"\n== {name}: {total:,} events loaded in {seconds:.1f} s")
    base = baseline_ms(store)
    print(f"   baseline SELECT count(*) FROM step_events: {base:.1f} ms")
    timings = asyncio.run(time_routes(store, now))
    ok = True
    for route, ms in timings.items():
        is_metric = route not in EXTRA_ROUTES
        verdict = ("ok" if ms < TARGET_MS else "OVER") if is_metric else "(export, no target)"
        ok = ok and (ms < TARGET_MS or not is_metric)
        print(f"   {route:<55} {ms:8.1f} ms  x{ms / base:6.1f} baseline  {verdict}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_store = SqlStore(f"sqlite:///{tmp}/bench.db")
        results.append(bench("SQLite", sqlite_store, args.events))
        sqlite_store.engine.dispose()
    if not args.skip_postgres:
        base = make_url(args.postgres)
        name = f"loom_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            pg_store = SqlStore(base.set(database=name).render_as_string(hide_password=False))
            results.append(bench("PostgreSQL", pg_store, args.events))
            pg_store.engine.dispose()
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    print("\nall metrics routes under 300 ms" if all(results) else "\nsome metrics routes are over 300 ms")


if __name__ == "__main__":
    main()
