"""Apply 5,000 typical Run batches through `SqlStore.apply_run_changes`, on SQLite and PostgreSQL.

`apply_run_changes` is the write path of every Run (the `loom_persist` activity, one transaction per
batch), so its Python CPU bounds how many Runs one worker can drive. A typical batch, as the workflow
sends it: the finished Step's StepResult and step_completed event, then the next Step's StepResult and
step_dispatched event; the first and last batch of each Run also set the Candidate's status and write
run_started or run_completed. Runs have five Steps, so six batches each.

The baseline writes the same rows in the same transactions with hand-written SQL on a bare
sqlite3/psycopg connection, without the metrics rollups: the floor any store must pay; the ratio shows
what SQLAlchemy and the rollups cost on top. CPU is this process's only (not PostgreSQL's server). The
digest covers every row Loom wrote (the Candidates' own clock times left out), so two versions of the
store can be checked to write the same rows.

    .venv/bin/python bench/persist.py [--batches 5000] [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]

PostgreSQL runs when --postgres or LOOM_TEST_POSTGRES_URL is given, in a fresh database dropped afterwards.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from loom_backend.domain import (  # noqa: E402
    CandidateStatus,
    EventType,
    MigrationAnnouncement,
    RunChange,
    StepEvent,
    StepResult,
    StepStatus,
    run_id,
)
from loom_backend.store.sql_store import SqlStore  # noqa: E402
from tests.postgres import fresh_database  # noqa: E402

MIGRATION = "base-image"
STEPS = ["bump", "build", "test", "merge", "deploy"]
START = datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
DIGESTED = {
    "candidates": "migration_id, id, status, inputs",
    "step_results": "*",
    "step_events": "*",
    "metrics_days": "*",
    "metrics_runs": "*",
    "metrics_steps": "*",
    "metrics_step_durations": "*",
}
Batch = tuple[str, str, list[RunChange]]


class _Run:
    """One Run's writes as its workflow would make them: deterministic event keys, the Run's own clock."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.candidate = f"svc-{n:05d}"
        self.run = run_id(MIGRATION, self.candidate)
        self.workflow_run = str(uuid.UUID(int=n))
        self.at = START + timedelta(minutes=n)
        self.seq = 0

    def event(self, event_type: EventType, step: str | None = None, **fields: Any) -> RunChange:
        self.seq += 1
        event = StepEvent(
            run_id=self.run,
            migration_id=MIGRATION,
            candidate_id=self.candidate,
            step_name=step,
            event_type=event_type,
            created_at=self.at,
            **fields,
        )
        return RunChange(event=event, event_key=f"{self.workflow_run}:{self.seq}")

    def result(self, step: str, status: StepStatus, started: datetime, **fields: Any) -> RunChange:
        result = StepResult(
            step_name=step, candidate_id=self.candidate, status=status, started_at=started, updated_at=self.at, **fields
        )
        return RunChange(step_result=result)

    def dispatch(self, step: str) -> list[RunChange]:
        return [
            self.result(step, StepStatus.IN_PROGRESS, self.at),
            self.event(EventType.STEP_DISPATCHED, step, status="in_progress", metadata={"attempt": "1"}),
        ]

    def finish(self, step: str, started: datetime) -> list[RunChange]:
        pr_url = f"https://git.example/{self.candidate}/pull/{self.seq}"
        meta = {"prUrl": pr_url, "commit": f"{self.n:08x}{self.seq:04x}"}
        ms = int((self.at - started).total_seconds() * 1000)
        return [
            self.result(step, StepStatus.MERGED, started, metadata=meta, pr_url=pr_url, completed_at=self.at),
            self.event(EventType.STEP_COMPLETED, step, status="merged", duration_ms=ms, metadata=meta),
        ]

    def batches(self) -> Iterator[list[RunChange]]:
        started = self.at
        yield [
            RunChange(candidate_status=CandidateStatus.RUNNING),
            self.event(EventType.RUN_STARTED, actor="ana", metadata={"targetImage": "base:2025.03"}),
            *self.dispatch(STEPS[0]),
        ]
        for previous, step in itertools.pairwise(STEPS):
            self.at += timedelta(seconds=47, milliseconds=self.n % 1000)
            yield [*self.finish(previous, started), *self.dispatch(step)]
            started = self.at
        self.at += timedelta(seconds=31)
        yield [
            *self.finish(STEPS[-1], started),
            RunChange(candidate_status=CandidateStatus.COMPLETED),
            self.event(EventType.RUN_COMPLETED),
        ]


def workload(batches: int) -> list[Batch]:
    """Whole Runs of five Steps, in the order the workflow persists them, cut at `batches`."""
    runs = (_Run(n) for n in range(-(-batches // (len(STEPS) + 1))))
    return [(r.run, r.candidate, changes) for r in runs for changes in r.batches()][:batches]


def announcement(work: list[Batch]) -> MigrationAnnouncement:
    return MigrationAnnouncement.model_validate(
        {
            "id": MIGRATION,
            "name": "Upgrade base image",
            "description": "Bench of the Runs' write path",
            "steps": [{"name": s, "migratorApp": "bench"} for s in STEPS],
            "candidates": [
                {"id": c, "kind": "service", "metadata": {"team": "payments"}, "files": []}
                for c in dict.fromkeys(candidate for _, candidate, _ in work)
            ],
            "migratorUrl": "http://127.0.0.1:9",
        }
    )


def timed(work: list[Batch], apply: Callable[[str, str, list[RunChange]], None]) -> tuple[float, float]:
    """Wall seconds and this process's CPU seconds to apply every batch in turn."""
    wall, cpu = time.perf_counter(), time.process_time()
    for run, candidate, changes in work:
        apply(run, candidate, changes)
    return time.perf_counter() - wall, time.process_time() - cpu


def prepare(url: str, work: list[Batch]) -> SqlStore:
    """A migrated database holding the Migration and its Candidates, not_started."""
    store = SqlStore(url)
    store.upgrade_schema()
    store.announce(announcement(work), START)
    return store


def loom(url: str, work: list[Batch]) -> tuple[float, float, str]:
    store = prepare(url, work)
    try:
        wall, cpu = timed(
            work, lambda run, candidate, changes: store.apply_run_changes(run, MIGRATION, candidate, changes)
        )
        with store.engine.connect() as connection:
            digest = hashlib.sha256()
            for table, columns in DIGESTED.items():
                rows = connection.execute(text(f"SELECT {columns} FROM {table}")).all()
                for row in sorted(repr(tuple(row)) for row in rows):
                    digest.update(row.encode())
        return wall, cpu, digest.hexdigest()[:16]
    finally:
        store.engine.dispose()


# -- the baseline: the same rows with hand-written SQL on a bare connection ------------------------------

RESULT_COLUMNS = (
    "run_id, step_name, migration_id, candidate_id, status, metadata, pr_url, started_at, updated_at, completed_at"
)
EVENT_COLUMNS = (
    "key, run_id, migration_id, candidate_id, step_name, event_type, status, actor, duration_ms, metadata, created_at"
)
UPSERT_RESULT = (
    f"INSERT INTO step_results ({RESULT_COLUMNS}) VALUES ({{marks10}}) ON CONFLICT (run_id, step_name) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in RESULT_COLUMNS.split(", ")[2:])
)
INSERT_EVENT = (
    f"INSERT INTO step_events ({EVENT_COLUMNS}) VALUES ({{marks11}}) ON CONFLICT (key) DO NOTHING RETURNING id"
)
UPDATE_CANDIDATE = "UPDATE candidates SET status = {m}, updated_at = {m} WHERE migration_id = {m} AND id = {m}"


def bare_sql(mark: str) -> tuple[str, str, str]:
    return (
        UPSERT_RESULT.format(marks10=", ".join([mark] * 10)),
        INSERT_EVENT.format(marks11=", ".join([mark] * 11)),
        UPDATE_CANDIDATE.format(m=mark),
    )


def bare_apply(
    cursor: Any, sql: tuple[str, str, str], when: Callable[[datetime | None], Any], doc: Callable[[dict], Any]
) -> Callable[[str, str, list[RunChange]], None]:
    upsert_result, insert_event, update_candidate = sql

    def apply(run: str, candidate: str, changes: list[RunChange]) -> None:
        for change in changes:
            if change.candidate_status is not None:
                now = when(datetime.now(UTC))
                cursor.execute(update_candidate, (change.candidate_status.value, now, MIGRATION, candidate))
            if (r := change.step_result) is not None:
                times = (when(r.started_at), when(r.updated_at), when(r.completed_at))
                cursor.execute(
                    upsert_result,
                    (run, r.step_name, MIGRATION, r.candidate_id, r.status.value, doc(r.metadata), r.pr_url, *times),
                )
            if (e := change.event) is not None:
                who = (change.event_key, e.run_id, e.migration_id, e.candidate_id, e.step_name, e.event_type.value)
                what = (e.status, e.actor, e.duration_ms, doc(e.metadata), when(e.created_at))
                cursor.execute(insert_event, (*who, *what))
                cursor.fetchone()

    return apply


def sqlite_baseline(path: str, work: list[Batch]) -> tuple[float, float]:
    connection = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
        connection.execute(f"PRAGMA {pragma}")
    cursor = connection.cursor()

    def when(at: datetime | None) -> str | None:
        return None if at is None else f"{at.astimezone(UTC):%Y-%m-%d %H:%M:%S.%f}"

    apply = bare_apply(cursor, bare_sql("?"), when, json.dumps)

    def in_transaction(run: str, candidate: str, changes: list[RunChange]) -> None:
        cursor.execute("BEGIN")
        apply(run, candidate, changes)
        cursor.execute("COMMIT")

    try:
        return timed(work, in_transaction)
    finally:
        connection.close()


def postgres_baseline(url: str, work: list[Batch]) -> tuple[float, float]:
    import psycopg
    from psycopg.types.json import Jsonb

    with psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)) as conn:
        cursor = conn.cursor()
        apply = bare_apply(cursor, bare_sql("%s"), lambda at: at, Jsonb)

        def in_transaction(run: str, candidate: str, changes: list[RunChange]) -> None:
            with conn.transaction():
                apply(run, candidate, changes)

        return timed(work, in_transaction)


def report(label: str, n: int, loom_times: tuple[float, float, str], bare: tuple[float, float]) -> None:
    wall, cpu, digest = loom_times
    bare_wall, bare_cpu = bare
    print(
        f"{label:10s} {n:,} batches: {n / wall:,.0f} batches/s, {cpu / n * 1000:.3f} ms CPU/batch"
        f" | bare SQL {n / bare_wall:,.0f} batches/s, {bare_cpu / n * 1000:.3f} ms CPU/batch"
        f" | ratio CPU loom/bare {cpu / bare_cpu:.1f}x, wall {wall / bare_wall:.1f}x | rows digest {digest}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=5_000)
    parser.add_argument("--postgres", default=os.environ.get("LOOM_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    work = workload(args.batches)
    with tempfile.TemporaryDirectory() as tmp:
        measured = loom(f"sqlite:///{tmp}/loom.db", work)
        bare_url = f"sqlite:///{tmp}/bare.db"
        prepare(bare_url, work).engine.dispose()
        report("SQLite", len(work), measured, sqlite_baseline(make_url(bare_url).database or "", work))
    if args.postgres:
        with fresh_database(args.postgres, prefix="loom_bench") as url:
            measured = loom(url, work)
        with fresh_database(args.postgres, prefix="loom_bench") as url:
            prepare(url, work).engine.dispose()
            report("PostgreSQL", len(work), measured, postgres_baseline(url, work))


if __name__ == "__main__":
    main()
