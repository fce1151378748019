"""Metrics queries over the rollups, the event log and the read model, portable across SQLite and PostgreSQL.

Counts, Run durations and per-Step figures read the rollups (store/rollups.py), which the event log
writer keeps exact, so their cost does not grow with the log; recent failures, the burndown and the
Prometheus snapshot read indexed slices of the log. Percentiles are exact nearest-rank values read by
offset off a duration index, so only a handful of rows ever reach Python.
SqlStore is the only caller: it owns the sessions and transactions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, String, Table, case, cast, exists, func, select
from sqlalchemy.orm import Session

from loom_backend.domain import (
    Burndown,
    BurndownDay,
    CallbackLatency,
    CandidateStatus,
    EventType,
    FailedStep,
    FailureList,
    MetricsOverview,
    MetricsTimeline,
    PrometheusSnapshot,
    StepMetrics,
    StepMetricsResponse,
    StepStatus,
    TimelineDay,
)
from loom_backend.store.tables import (
    CandidateRow,
    MetricsDayRow,
    MetricsRunRow,
    MetricsStepDurationRow,
    MetricsStepRow,
    MigrationRow,
    StepEventRow,
    StepResultRow,
)

MIGRATIONS: Table = MigrationRow.__table__  # type: ignore[attr-defined]
CANDIDATES: Table = CandidateRow.__table__  # type: ignore[attr-defined]
STEP_RESULTS: Table = StepResultRow.__table__  # type: ignore[attr-defined]
EVENTS: Table = StepEventRow.__table__  # type: ignore[attr-defined]
METRICS_DAYS: Table = MetricsDayRow.__table__  # type: ignore[attr-defined]
METRICS_RUNS: Table = MetricsRunRow.__table__  # type: ignore[attr-defined]
METRICS_STEPS: Table = MetricsStepRow.__table__  # type: ignore[attr-defined]
METRICS_STEP_DURATIONS: Table = MetricsStepDurationRow.__table__  # type: ignore[attr-defined]

SUCCEEDED = (StepStatus.COMPLETED.value, StepStatus.MERGED.value)
FAILED = StepStatus.FAILED.value
# The Run writes this text (workflow.RunWorkflow._send) when a Step's dispatch fails after all its attempts.
DISPATCH_FAILURE_TEXT = "Dispatch to the Migrator failed"
BURNDOWN_PACE_DAYS = 14
MAX_HISTORY_DAYS = 365
CALLBACK_LATENCY_WINDOW = 2_000
CALLBACK_LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)


class MetricsQueries:
    """The metrics of one database dialect; every method reads inside the caller's session."""

    def __init__(self, dialect: str) -> None:
        self.dialect = dialect

    # -- dialect differences --------------------------------------------------------------

    def _day(self, column: Any) -> Any:
        return sql_day_text(self.dialect, column)

    def _ms_between(self, later: Any, earlier: Any) -> Any:
        return sql_ms_between(self.dialect, later, earlier)

    # -- overview -----------------------------------------------------------------------------

    def overview(self, session: Session, migration_id: str | None) -> MetricsOverview:
        migrations = session.execute(
            select(func.count()).select_from(MIGRATIONS).where(*_by(MIGRATIONS.c.id, migration_id))
        ).scalar_one()
        by_status = {CandidateStatus(s): 0 for s in CandidateStatus}
        for status, n in session.execute(
            select(CANDIDATES.c.status, func.count())
            .where(*_by(CANDIDATES.c.migration_id, migration_id))
            .group_by(CANDIDATES.c.status)
        ):
            by_status[CandidateStatus(status)] = n
        d = METRICS_DAYS
        runs_started, runs_completed, runs_cancelled, steps_failed = session.execute(
            select(
                *(
                    _total(column)
                    for column in (d.c.runs_started, d.c.runs_completed, d.c.runs_cancelled, d.c.steps_failed)
                )
            ).where(*_by(d.c.migration_id, migration_id))
        ).one()
        reviews_waiting = session.execute(
            select(func.count())
            .select_from(STEP_RESULTS)
            .where(
                STEP_RESULTS.c.status == StepStatus.AWAITING_REVIEW.value,
                _run_is_active(),
                *_by(STEP_RESULTS.c.migration_id, migration_id),
            )
        ).scalar_one()
        return MetricsOverview(
            migration_id=migration_id,
            migrations=migrations,
            candidates=by_status,
            runs_started=runs_started,
            runs_completed=runs_completed,
            runs_cancelled=runs_cancelled,
            steps_failed=steps_failed,
            reviews_waiting=reviews_waiting,
            median_run_duration_ms=self._median_run_duration(session, migration_id),
        )

    def _median_run_duration(self, session: Session, migration_id: str | None) -> int | None:
        """From a Run's latest run_started to its run_completed (a Candidate can run again after a Cancel).

        Read off the duration index of metrics_runs: a count, then the nearest-rank row by offset.
        """
        r = METRICS_RUNS
        scope = [r.c.duration_ms.is_not(None), *_by(r.c.migration_id, migration_id)]
        n = session.execute(select(func.count()).select_from(r).where(*scope)).scalar_one()
        if not n:
            return None
        return session.execute(
            select(r.c.duration_ms).where(*scope).order_by(r.c.duration_ms).limit(1).offset(_py_rank(n, 50) - 1)
        ).scalar_one()

    # -- per Step -----------------------------------------------------------------------------

    def steps(self, session: Session, migration_id: str | None) -> StepMetricsResponse:
        r = METRICS_STEPS
        totals = session.execute(
            select(
                r.c.step_name,
                *(
                    _total(column)
                    for column in (
                        r.c.completions,
                        r.c.succeeded,
                        r.c.failures,
                        r.c.timed,
                        r.c.retries,
                        r.c.reviews,
                        r.c.review_wait_ms,
                    )
                ),
            )
            .where(*_by(r.c.migration_id, migration_id))
            .group_by(r.c.step_name)
            .order_by(r.c.step_name)
        ).all()
        steps = []
        for name, count, succeeded, failures, timed, retries, reviews, wait in totals:
            p50, p95 = (self._duration(session, migration_id, name, _py_rank(timed, p)) for p in (50, 95))
            steps.append(
                StepMetrics(
                    step_name=name,
                    count=count,
                    succeeded=succeeded,
                    failures=failures,
                    success_rate=succeeded / count if count else None,
                    retries=retries,
                    p50_duration_ms=p50,
                    p95_duration_ms=p95,
                    reviews=reviews,
                    avg_review_wait_ms=round(wait / reviews) if reviews else None,
                    total_review_wait_ms=wait,
                )
            )
        return StepMetricsResponse(migration_id=migration_id, steps=steps)

    def step_p95(self, session: Session, migration_id: str) -> dict[str, int]:
        """Each Step's p95 successful duration in the Migration, by name: what stuck detection scales."""
        r = METRICS_STEPS
        timed = session.execute(
            select(r.c.step_name, r.c.timed).where(r.c.migration_id == migration_id, r.c.timed > 0)
        ).all()
        found = {name: self._duration(session, migration_id, name, _py_rank(n, 95)) for name, n in timed}
        return {name: ms for name, ms in found.items() if ms is not None}

    def _duration(self, session: Session, migration_id: str | None, step_name: str, rank: int) -> int | None:
        """The rank-th shortest successful duration of a Step: an exact nearest-rank percentile, off an index."""
        if rank < 1:
            return None
        d = METRICS_STEP_DURATIONS
        return session.execute(
            select(d.c.duration_ms)
            .where(d.c.step_name == step_name, *_by(d.c.migration_id, migration_id))
            .order_by(d.c.duration_ms)
            .limit(1)
            .offset(rank - 1)
        ).scalar()

    # -- over time ------------------------------------------------------------------------------

    def timeline(self, session: Session, migration_id: str | None, days: int, today: date) -> MetricsTimeline:
        d = METRICS_DAYS
        first = today - timedelta(days=days - 1)
        by_day = {first + timedelta(days=i): TimelineDay(date=first + timedelta(days=i)) for i in range(days)}
        for day, started, completed, succeeded, failed in session.execute(
            select(
                d.c.day,
                _total(d.c.runs_started),
                _total(d.c.runs_completed),
                _total(d.c.steps_succeeded),
                _total(d.c.steps_failed),
            )
            .where(d.c.day >= first, d.c.day <= today, *_by(d.c.migration_id, migration_id))
            .group_by(d.c.day)
        ):
            entry = by_day[day]
            entry.runs_started, entry.runs_completed = started, completed
            entry.steps_completed, entry.steps_failed = succeeded, failed
        return MetricsTimeline(migration_id=migration_id, days=list(by_day.values()))

    def failures(self, session: Session, migration_id: str | None, limit: int) -> FailureList:
        e = EVENTS
        rows = session.execute(
            select(e.c.migration_id, e.c.candidate_id, e.c.run_id, e.c.step_name, e.c.metadata, e.c.created_at)
            .where(
                e.c.event_type == EventType.STEP_COMPLETED.value,
                e.c.status == FAILED,
                *_by(e.c.migration_id, migration_id),
            )
            .order_by(e.c.created_at.desc(), e.c.id.desc())
            .limit(limit)
        )
        return FailureList(
            failures=[
                FailedStep(
                    migration_id=mid,
                    candidate_id=cid,
                    run_id=rid,
                    step_name=step,
                    error=(meta or {}).get("error"),
                    failed_at=_utc(at),
                )
                for mid, cid, rid, step, meta, at in rows
            ]
        )

    def burndown(self, session: Session, migration_id: str | None, today: date) -> Burndown:
        """Remaining Candidates per day, anchored on today's statuses and walked back through run_completed."""
        e = EVENTS
        total, completed = session.execute(
            select(
                func.count(),
                func.coalesce(func.sum(case((CANDIDATES.c.status == CandidateStatus.COMPLETED.value, 1), else_=0)), 0),
            ).where(*_by(CANDIDATES.c.migration_id, migration_id))
        ).one()
        remaining = total - completed
        day = self._day(e.c.created_at)
        earliest = today - timedelta(days=MAX_HISTORY_DAYS - 1)
        completions = {
            date.fromisoformat(d): n
            for d, n in session.execute(
                select(day, func.count())
                .where(
                    e.c.event_type == EventType.RUN_COMPLETED.value,
                    e.c.created_at >= _midnight(earliest),
                    *_by(e.c.migration_id, migration_id),
                )
                .group_by(day)
            )
        }
        created = session.execute(
            select(func.min(MIGRATIONS.c.created_at)).where(*_by(MIGRATIONS.c.id, migration_id))
        ).scalar()
        starts = [d for d in (*completions, _utc(created).date() if created else None) if d is not None]
        first = max(min([*starts, today]), earliest)
        days: list[BurndownDay] = []
        later = sum(n for d, n in completions.items() if d > today)
        for offset in range((today - first).days, -1, -1):
            d = today - timedelta(days=offset)
            days.append(BurndownDay(date=d, remaining=0))
        for entry in reversed(days):
            entry.remaining = remaining + later
            later += completions.get(entry.date, 0)
        recent = sum(n for d, n in completions.items() if today - timedelta(days=BURNDOWN_PACE_DAYS) < d <= today)
        pace = recent / BURNDOWN_PACE_DAYS if recent else None
        projected: date | None = None
        if total and remaining == 0:
            projected = max((d for d in completions if d <= today), default=today)
        elif pace:
            projected = today + timedelta(days=math.ceil(remaining / pace))
        return Burndown(
            migration_id=migration_id,
            total=total,
            remaining=remaining,
            days=days,
            pace_per_day=pace,
            projected_completion=projected,
        )

    # -- Prometheus ------------------------------------------------------------------------------

    def prometheus(self, session: Session) -> PrometheusSnapshot:
        e = EVENTS
        in_flight: dict[str, int] = dict(
            session.execute(
                select(CANDIDATES.c.migration_id, func.count())
                .where(CANDIDATES.c.status == CandidateStatus.RUNNING.value)
                .group_by(CANDIDATES.c.migration_id)
            ).all()
        )
        outcomes: dict[str, int] = dict(
            session.execute(
                select(e.c.status, func.count())
                .where(e.c.event_type == EventType.STEP_COMPLETED.value)
                .group_by(e.c.status)
            ).all()
        )
        dispatch_errors = session.execute(
            select(func.count()).where(
                e.c.event_type == EventType.STEP_COMPLETED.value,
                e.c.status == FAILED,
                cast(e.c.metadata, String).like(f"%{DISPATCH_FAILURE_TEXT}%"),
            )
        ).scalar_one()
        return PrometheusSnapshot(
            runs_in_flight=in_flight,
            step_outcomes={str(k): v for k, v in outcomes.items()},
            dispatch_errors=dispatch_errors,
            callback_latency=_histogram(self._callback_latencies(session)),
        )

    def _callback_latencies(self, session: Session) -> list[float]:
        """Seconds from each of the latest dispatches to the next update or completion of that Step."""
        dispatched = (
            select(EVENTS.c.run_id, EVENTS.c.step_name, EVENTS.c.created_at)
            .where(EVENTS.c.event_type == EventType.STEP_DISPATCHED.value)
            .order_by(EVENTS.c.created_at.desc())
            .limit(CALLBACK_LATENCY_WINDOW)
            .subquery()
        )
        answer = EVENTS.alias("answer")
        answered_at = (
            select(func.min(answer.c.created_at))
            .where(
                answer.c.run_id == dispatched.c.run_id,
                answer.c.event_type.in_([EventType.STEP_UPDATED, EventType.STEP_COMPLETED]),
                answer.c.created_at >= dispatched.c.created_at,
                answer.c.step_name == dispatched.c.step_name,
            )
            .scalar_subquery()
        )
        latency = self._ms_between(answered_at, dispatched.c.created_at)
        return [ms / 1000.0 for (ms,) in session.execute(select(latency)) if ms is not None]

    # -- history ---------------------------------------------------------------------------------

    def metadata_keys(self, session: Session, migration_id: str) -> list[str]:
        keys: set[str] = set()
        for (meta,) in session.execute(select(CANDIDATES.c.metadata).where(CANDIDATES.c.migration_id == migration_id)):
            keys.update(meta or {})
        return sorted(keys)


def sql_day_text(dialect: str, column: Any) -> Any:
    """The UTC day of a timestamp as 'YYYY-MM-DD' (SQLite stores UTC text; PostgreSQL needs the zone)."""
    if dialect == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
    return func.substr(column, 1, 10)


def sql_ms_between(dialect: str, later: Any, earlier: Any) -> Any:
    if dialect == "postgresql":
        return func.extract("epoch", later - earlier) * 1000.0
    # julianday() is a double of ~2.4 million days: good to ~50 µs, so round to whole milliseconds.
    return func.round((func.julianday(later) - func.julianday(earlier)) * 86_400_000.0)


def _by(column: Any, value: str | None) -> list[Any]:
    return [column == value] if value else []


def _total(column: Any) -> Any:
    """A counter's sum as an integer (PostgreSQL sums bigints as numeric)."""
    return cast(func.coalesce(func.sum(column), 0), BigInteger)


def _py_rank(n: int, percent: int) -> int:
    """Nearest-rank percentile position, ceil(n * p / 100), in integer arithmetic."""
    return (n * percent + 99) // 100


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _run_is_active() -> Any:
    return exists().where(
        CANDIDATES.c.migration_id == STEP_RESULTS.c.migration_id,
        CANDIDATES.c.id == STEP_RESULTS.c.candidate_id,
        CANDIDATES.c.status == CandidateStatus.RUNNING.value,
    )


def _histogram(samples: Sequence[float], buckets: Iterable[float] = CALLBACK_LATENCY_BUCKETS) -> CallbackLatency:
    ordered = sorted(samples)
    bounds = list(buckets)
    counts, i = [], 0
    for bound in bounds:
        while i < len(ordered) and ordered[i] <= bound:
            i += 1
        counts.append(i)
    return CallbackLatency(buckets=bounds, counts=counts, count=len(ordered), sum_seconds=sum(ordered))
