"""The metrics rollups stay equal to a recomputation from the raw event log, whatever order and retries bring."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from alembic.config import Config
from sqlalchemy import Table, select

from alembic import command
from loom_backend.domain import CandidateStatus, EventType, StepEvent
from loom_backend.store.rollups import ROLLUP_TABLES
from loom_backend.store.sql_store import ALEMBIC_INI, SqlStore
from tests.integration.test_metrics import DAY0, MIGRATION, T0, seconds
from tests.integration.test_store import announcement

E = EventType
OTHER = "other"


def mixed_log() -> list[tuple[str, StepEvent]]:
    """Two Migrations; a Run restarted after a Cancel; reviews whose awaiting_review arrives late, or twice, or
    never; completions without a duration, without a Step, or with an outcome that is neither success nor
    failure; and retried writes that repeat a key (some with different content, which must be ignored)."""

    def e(
        key: str,
        event_type: EventType,
        at_s: float,
        candidate: str = "a",
        step: str | None = None,
        status: str | None = None,
        duration_ms: int | None = None,
        migration: str = MIGRATION,
    ) -> tuple[str, StepEvent]:
        return key, StepEvent(
            run_id=f"{migration}__{candidate}",
            migration_id=migration,
            candidate_id=candidate,
            step_name=step,
            event_type=event_type,
            status=status,
            duration_ms=duration_ms,
            created_at=T0 + seconds(at_s),
        )

    day = 86_400
    return [
        e("a1", E.RUN_STARTED, 0),
        e("a1", E.RUN_STARTED, 5),  # a retried write: same key, later clock
        e("a2", E.STEP_DISPATCHED, 0, step="bump", status="in_progress"),
        e("a3", E.STEP_COMPLETED, 60, step="bump", status="merged", duration_ms=60_000),
        e("a3", E.STEP_COMPLETED, 61, step="bump", status="failed", duration_ms=1),
        e("a4", E.STEP_UPDATED, 70, step="review", status="awaiting_review"),
        e("a5", E.STEP_UPDATED, 90, step="review", status="awaiting_review"),  # waiting again: the wait restarts
        e("a6", E.REVIEW_APPROVED, 170, step="review"),
        e("a6", E.REVIEW_APPROVED, 170, step="review"),
        e("a7", E.STEP_COMPLETED, 170, step="review", status="completed", duration_ms=110_000),
        e("a8", E.RUN_COMPLETED, 180),
        # b: the review is written before the awaiting_review it follows, then b is cancelled and runs again.
        e("b1", E.RUN_STARTED, day, candidate="b"),
        e("b2", E.STEP_COMPLETED, day + 1, "b", "bump", "failed", 1_000),
        e("b3", E.STEP_RETRIED, day + 30, candidate="b", step="bump"),
        e("b4", E.STEP_COMPLETED, day + 33, "b", "bump", "completed", 3_000),
        e("b5", E.REVIEW_REJECTED, day + 300, candidate="b", step="review"),
        e("b6", E.STEP_UPDATED, day + 100, candidate="b", step="review", status="awaiting_review"),
        e("b6", E.STEP_UPDATED, day + 100, candidate="b", step="review", status="awaiting_review"),
        e("b7", E.STEP_UPDATED, day + 400, candidate="b", step="review", status="awaiting_review"),  # after: no change
        e("b8", E.RUN_CANCELLED, day + 500, candidate="b"),
        e("b9", E.RUN_STARTED, 2 * day, candidate="b"),
        e("b10", E.RUN_COMPLETED, 2 * day + 45, candidate="b"),
        e("b11", E.REVIEW_APPROVED, 2 * day + 40, candidate="b", step="review"),  # waits from b7
        # c: outcomes that count as neither, a completion without duration or Step, a review nobody asked for.
        e("c1", E.RUN_STARTED, 2 * day, candidate="c"),
        e("c2", E.STEP_COMPLETED, 2 * day + 9, "c", "bump", "failed", 9_000),
        e("c3", E.STEP_COMPLETED, 2 * day + 10, "c", "bump", "merged", None),
        e("c4", E.STEP_COMPLETED, 2 * day + 11, "c", None, "failed", 5),
        e("c5", E.STEP_COMPLETED, 2 * day + 12, "c", "bump", "open", 7),
        e("c6", E.REVIEW_REJECTED, 2 * day + 13, candidate="c", step="review"),
        e("c7", E.STEP_RETRIED, 2 * day + 14, candidate="c", step=None),
        # Another Migration, with a Run completed before it is written as started.
        e("x1", E.RUN_COMPLETED, 3 * day + 60, candidate="x", migration=OTHER),
        e("x2", E.STEP_COMPLETED, 3 * day + 50, "x", "bump", "completed", 50_000, OTHER),
        e("x3", E.RUN_STARTED, 3 * day, candidate="x", migration=OTHER),
        e("x1", E.RUN_COMPLETED, 3 * day + 99, candidate="x", migration=OTHER),
    ]


def rollups(store: SqlStore) -> dict[str, list[Any]]:
    with store.engine.connect() as connection:
        return {table.name: connection.execute(select(table).order_by(*_key(table))).all() for table in ROLLUP_TABLES}


def _key(table: Table) -> list[Any]:
    return list(table.primary_key.columns)


def metrics(store: SqlStore) -> list[Any]:
    today = DAY0 + timedelta(days=4)
    return [
        (
            store.metrics_overview(scope),
            store.step_metrics(scope),
            store.metrics_timeline(6, today, scope),
        )
        for scope in (None, MIGRATION, OTHER)
    ]


def write(store: SqlStore, log: list[tuple[str, StepEvent]]) -> list[bool]:
    store.announce(announcement(["a", "b", "c"]), T0 - timedelta(days=1))
    store.announce(announcement(["x"], id=OTHER), T0 - timedelta(days=1))
    store.set_candidate_status(MIGRATION, "a", CandidateStatus.COMPLETED)
    return [store.append_event(event, key) for key, event in log]


def test_rollups_equal_a_rebuild_from_the_log_after_mixed_events_and_repeated_keys(store: SqlStore) -> None:
    log = mixed_log()
    inserted = write(store, log)
    assert inserted.count(False) == 5
    written, figures = rollups(store), metrics(store)
    store.rebuild_rollups()
    assert rollups(store) == written
    assert metrics(store) == figures


def test_rollups_give_the_figures_of_the_log(store: SqlStore) -> None:
    write(store, mixed_log())
    overview = store.metrics_overview(MIGRATION)
    assert (overview.runs_started, overview.runs_completed, overview.runs_cancelled) == (4, 2, 1)
    assert overview.steps_failed == 3  # b's and c's bump, and c's completion without a Step
    # a took 180 s; b's second Run took 45 s from its latest start.
    assert overview.median_run_duration_ms == 45_000
    assert store.metrics_overview(OTHER).median_run_duration_ms == 60_000
    steps = {s.step_name: s for s in store.step_metrics(MIGRATION).steps}
    bump, review = steps["bump"], steps["review"]
    assert (bump.count, bump.succeeded, bump.failures, bump.retries) == (6, 3, 2, 1)
    assert (bump.p50_duration_ms, bump.p95_duration_ms) == (3_000, 60_000)
    # a waited 80 s (from its second awaiting_review), b's rejection 200 s (from the awaiting_review written after
    # it), b's approval 86,040 s (from the last awaiting_review before it); c's rejection had nothing to wait on.
    assert (review.reviews, review.total_review_wait_ms, review.avg_review_wait_ms) == (3, 86_320_000, 28_773_333)
    assert [s.step_name for s in store.step_metrics().steps] == ["bump", "review"]
    assert store.step_metrics().steps[0].p95_duration_ms == 60_000


def test_a_repeated_key_changes_no_figure(store: SqlStore) -> None:
    log = mixed_log()
    write(store, log)
    before = rollups(store)
    assert not any(store.append_event(event.model_copy(update={"duration_ms": 1}), key) for key, event in log)
    assert rollups(store) == before


def test_the_schema_upgrade_backfills_the_rollups_of_an_existing_log(tmp_path) -> None:
    appended = SqlStore(f"sqlite:///{tmp_path / 'appended.db'}")
    appended.upgrade_schema()
    write(appended, mixed_log())
    existing = SqlStore(f"sqlite:///{tmp_path / 'existing.db'}")
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(ALEMBIC_INI.parent / "alembic"))
    config.attributes["engine"] = existing.engine
    command.upgrade(config, "0003")
    with appended.engine.connect() as source, existing.engine.begin() as target:
        for name in ("migrations", "candidates", "step_events"):
            # The columns the 0003 schema had: later migrations added some, which the copy leaves out.
            columns = ", ".join(row[1] for row in target.exec_driver_sql(f"PRAGMA table_info({name})").all())
            rows = source.exec_driver_sql(f"SELECT {columns} FROM {name}").all()
            marks = ", ".join("?" * len(rows[0]))
            target.exec_driver_sql(f"INSERT INTO {name} ({columns}) VALUES ({marks})", [tuple(r) for r in rows])
    command.upgrade(config, "head")
    assert rollups(existing) == rollups(appended)
    appended.engine.dispose()
    existing.engine.dispose()
