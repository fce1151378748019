"""The metrics rollups: small tables kept in step with the event log, so metrics never scan the log.

`Rollups.apply` adds one newly inserted event, inside the transaction that inserted it; a duplicate key
inserts nothing and so adds nothing, which keeps every rollup exact under retries. `Rollups.rebuild`
recomputes them all from step_events (INSERT ... SELECT), for a log filled in bulk or an existing
database. Every figure is a sum or a latest time, so the order events arrive in does not matter; the
one that depends on two events, a review's wait, is applied as the difference the new event makes.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import cache, cached_property
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Date,
    Table,
    bindparam,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.orm import Session

from loom_backend.domain import EventType, StepStatus
from loom_backend.store.metrics import FAILED, SUCCEEDED, sql_ms_between
from loom_backend.store.tables import (
    MetricsDayRow,
    MetricsRunRow,
    MetricsStepDurationRow,
    MetricsStepRow,
    StepEventRow,
    insert_on,
)

EVENTS: Table = StepEventRow.__table__  # type: ignore[attr-defined]
DAYS: Table = MetricsDayRow.__table__  # type: ignore[attr-defined]
RUNS: Table = MetricsRunRow.__table__  # type: ignore[attr-defined]
STEPS: Table = MetricsStepRow.__table__  # type: ignore[attr-defined]
DURATIONS: Table = MetricsStepDurationRow.__table__  # type: ignore[attr-defined]
ROLLUP_TABLES = (DAYS, RUNS, STEPS, DURATIONS)

DAY_EVENTS = (EventType.RUN_STARTED, EventType.RUN_COMPLETED, EventType.RUN_CANCELLED, EventType.STEP_COMPLETED)
RUN_EVENTS = (EventType.RUN_STARTED, EventType.RUN_COMPLETED)
STEP_EVENTS = (EventType.STEP_COMPLETED, EventType.STEP_RETRIED, EventType.REVIEW_APPROVED, EventType.REVIEW_REJECTED)
REVIEWS = (EventType.REVIEW_APPROVED.value, EventType.REVIEW_REJECTED.value)
AWAITING_REVIEW = StepStatus.AWAITING_REVIEW.value
RUN_TIMES = {EventType.RUN_STARTED: "started_at", EventType.RUN_COMPLETED: "completed_at"}
INSERT_DURATION = insert(DURATIONS)


class Rollups:
    """The rollups of one database dialect; every method works inside the caller's session or connection.

    `apply` runs with every new event, so its statements are built once and run with each event's values.
    """

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect

    # -- one new event -------------------------------------------------------------------------

    def apply(self, session: Session | Connection, event_id: int, row: dict[str, Any]) -> None:
        """Add an event that was just inserted (never one whose key was already there)."""
        event_type, status, step = row["event_type"], row["status"], row["step_name"]
        succeeded, failed = status in SUCCEEDED, status == FAILED
        timed = event_type == EventType.STEP_COMPLETED and succeeded and row["duration_ms"] is not None
        if event_type in DAY_EVENTS:
            self._add(
                session,
                DAYS,
                {"day": _utc_day(row["created_at"]), "migration_id": row["migration_id"]},
                {
                    "runs_started": int(event_type == EventType.RUN_STARTED),
                    "runs_completed": int(event_type == EventType.RUN_COMPLETED),
                    "runs_cancelled": int(event_type == EventType.RUN_CANCELLED),
                    "steps_succeeded": int(event_type == EventType.STEP_COMPLETED and succeeded),
                    "steps_failed": int(event_type == EventType.STEP_COMPLETED and failed),
                },
            )
        if event_type in RUN_EVENTS:
            self._run(session, row)
        if step is None:
            return
        if event_type == EventType.STEP_COMPLETED:
            counts = {"completions": 1, "succeeded": int(succeeded), "failures": int(failed), "timed": int(timed)}
            self._add(session, STEPS, _step_key(row), counts)
            if timed:
                durations = {
                    "event_id": event_id,
                    "migration_id": row["migration_id"],
                    "step_name": step,
                    "duration_ms": row["duration_ms"],
                }
                session.execute(INSERT_DURATION, durations)
        elif event_type == EventType.STEP_RETRIED:
            self._add(session, STEPS, _step_key(row), {"retries": 1})
        elif event_type in REVIEWS or (event_type == EventType.STEP_UPDATED and status == AWAITING_REVIEW):
            # A review's wait runs from the latest awaiting_review before it, so either event can change it.
            after = self._review_waits(session, row["run_id"], step, without=None)
            before = self._review_waits(session, row["run_id"], step, without=event_id)
            reviews, wait = after[0] - before[0], after[1] - before[1]
            if event_type in REVIEWS or reviews or wait:
                self._add(session, STEPS, _step_key(row), {"reviews": reviews, "review_wait_ms": wait})

    def _add(self, session: Session | Connection, table: Table, key: dict[str, Any], counts: dict[str, int]) -> None:
        """Upsert one row, adding to its counters; atomic per row, so concurrent Runs never lose a count."""
        session.execute(_upsert_adding(self.dialect, table, tuple(key), tuple(counts)), key | counts)

    def _run(self, session: Session | Connection, row: dict[str, Any]) -> None:
        column = RUN_TIMES[row["event_type"]]
        values = {"run_id": row["run_id"], "migration_id": row["migration_id"], column: row["created_at"]}
        session.execute(self._upsert_run_times[column], values)
        session.execute(self._one_run_duration, {"run": row["run_id"]})

    @cached_property
    def _upsert_run_times(self) -> dict[str, Any]:
        """Per column, an upsert that keeps the later of the stored time and the event's."""
        upserts = {}
        for column in RUN_TIMES.values():
            statement = insert_on(self.dialect, RUNS)
            new, old = statement.excluded[column], RUNS.c[column]
            upserts[column] = statement.on_conflict_do_update(
                index_elements=["run_id"], set_={column: case((old.is_(None) | (new > old), new), else_=old)}
            )
        return upserts

    @cached_property
    def _one_run_duration(self) -> Any:
        return self._run_durations().where(RUNS.c.run_id == bindparam("run"))

    def _run_durations(self) -> Any:
        return (
            update(RUNS)
            .where(RUNS.c.started_at.is_not(None), RUNS.c.completed_at.is_not(None))
            .values(duration_ms=self._whole_ms(RUNS.c.completed_at, RUNS.c.started_at))
        )

    def _review_waits(
        self, session: Session | Connection, run_id: str, step: str, without: int | None
    ) -> tuple[int, int]:
        """How many of one Run's reviews of a Step have a wait, and their total, leaving out one event."""
        review = EVENTS.alias("review")
        waits = (
            select(self._review_wait(review, without).label("ms"))
            .where(
                review.c.run_id == run_id,
                review.c.event_type.in_(REVIEWS),
                review.c.step_name == step,
                *([review.c.id != without] if without is not None else []),
            )
            .subquery()
        )
        n, total = session.execute(select(func.count(waits.c.ms), func.coalesce(func.sum(waits.c.ms), 0))).one()
        return int(n), int(total)

    def _review_wait(self, review: Any, without: int | None = None) -> Any:
        """Whole milliseconds from the latest awaiting_review of the Step, at or before the review, to the review."""
        waiting = EVENTS.alias("waiting")
        waiting_since = (
            select(func.max(waiting.c.created_at))
            .where(
                waiting.c.run_id == review.c.run_id,
                waiting.c.event_type == EventType.STEP_UPDATED.value,
                waiting.c.created_at <= review.c.created_at,
                waiting.c.step_name == review.c.step_name,
                waiting.c.status == AWAITING_REVIEW,
                *([waiting.c.id != without] if without is not None else []),
            )
            .scalar_subquery()
        )
        return self._whole_ms(review.c.created_at, waiting_since)

    def _whole_ms(self, later: Any, earlier: Any) -> Any:
        return cast(func.round(sql_ms_between(self.dialect, later, earlier)), BigInteger)

    # -- everything, from the log ----------------------------------------------------------------

    def rebuild(self, session: Session | Connection) -> None:
        """Recompute every rollup from step_events; what `apply` would give after each event in turn."""
        e = EVENTS
        for table in ROLLUP_TABLES:
            session.execute(delete(table))

        day = self._utc_day(e.c.created_at)
        session.execute(
            insert(DAYS).from_select(
                [
                    "day",
                    "migration_id",
                    "runs_started",
                    "runs_completed",
                    "runs_cancelled",
                    "steps_succeeded",
                    "steps_failed",
                ],
                select(
                    day,
                    e.c.migration_id,
                    _sum(e.c.event_type == EventType.RUN_STARTED.value),
                    _sum(e.c.event_type == EventType.RUN_COMPLETED.value),
                    _sum(e.c.event_type == EventType.RUN_CANCELLED.value),
                    _sum((e.c.event_type == EventType.STEP_COMPLETED.value) & e.c.status.in_(SUCCEEDED)),
                    _sum((e.c.event_type == EventType.STEP_COMPLETED.value) & (e.c.status == FAILED)),
                )
                .where(e.c.event_type.in_([t.value for t in DAY_EVENTS]))
                .group_by(day, e.c.migration_id),
            )
        )

        session.execute(
            insert(RUNS).from_select(
                ["run_id", "migration_id", "started_at", "completed_at"],
                select(
                    e.c.run_id,
                    func.min(e.c.migration_id),
                    func.max(case((e.c.event_type == EventType.RUN_STARTED.value, e.c.created_at))),
                    func.max(case((e.c.event_type == EventType.RUN_COMPLETED.value, e.c.created_at))),
                )
                .where(e.c.event_type.in_([t.value for t in RUN_EVENTS]))
                .group_by(e.c.run_id),
            )
        )
        session.execute(self._run_durations())

        completed = e.c.event_type == EventType.STEP_COMPLETED.value
        succeeded = completed & e.c.status.in_(SUCCEEDED)
        timed = succeeded & e.c.duration_ms.is_not(None)
        per_event = (
            select(
                e.c.migration_id,
                e.c.step_name,
                case((completed, 1), else_=0).label("completions"),
                case((succeeded, 1), else_=0).label("succeeded"),
                case((completed & (e.c.status == FAILED), 1), else_=0).label("failures"),
                case((timed, 1), else_=0).label("timed"),
                case((e.c.event_type == EventType.STEP_RETRIED.value, 1), else_=0).label("retries"),
                case((e.c.event_type.in_(REVIEWS), self._review_wait(e))).label("wait"),
            )
            .where(e.c.event_type.in_([t.value for t in STEP_EVENTS]), e.c.step_name.is_not(None))
            .subquery()
        )
        p = per_event.c
        session.execute(
            insert(STEPS).from_select(
                [
                    "migration_id",
                    "step_name",
                    "completions",
                    "succeeded",
                    "failures",
                    "timed",
                    "retries",
                    "reviews",
                    "review_wait_ms",
                ],
                select(
                    p.migration_id,
                    p.step_name,
                    func.sum(p.completions),
                    func.sum(p.succeeded),
                    func.sum(p.failures),
                    func.sum(p.timed),
                    func.sum(p.retries),
                    func.count(p.wait),
                    func.coalesce(func.sum(p.wait), literal(0)),
                ).group_by(p.migration_id, p.step_name),
            )
        )

        session.execute(
            insert(DURATIONS).from_select(
                ["event_id", "migration_id", "step_name", "duration_ms"],
                select(e.c.id, e.c.migration_id, e.c.step_name, e.c.duration_ms).where(
                    timed, e.c.step_name.is_not(None)
                ),
            )
        )

    def _utc_day(self, column: Any) -> Any:
        """The UTC day of a timestamp as a date (SQLite stores UTC text, 'YYYY-MM-DD ...', as SQLAlchemy's Date does)."""
        if self.dialect == "postgresql":
            return cast(func.timezone("UTC", column), Date)
        return func.substr(column, 1, 10)


@cache
def _upsert_adding(dialect: str, table: Table, keys: tuple[str, ...], counts: tuple[str, ...]) -> Any:
    """Insert a row of `keys` and `counts`, or add the counts to the row already there."""
    statement = insert_on(dialect, table)
    return statement.on_conflict_do_update(
        index_elements=list(keys), set_={k: table.c[k] + statement.excluded[k] for k in counts}
    )


def _sum(condition: Any) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _step_key(row: dict[str, Any]) -> dict[str, Any]:
    return {"migration_id": row["migration_id"], "step_name": row["step_name"]}


def _utc_day(at: datetime) -> date:
    """SQLite hands back naive datetimes; everything Loom stores is UTC."""
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC).date()
