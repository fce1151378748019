"""Metrics queries over the event log and the read model, portable across SQLite and PostgreSQL.

Each metric is one aggregate query (a few for the overview and per-Step figures), answered
from the indexes declared on StepEventRow; percentiles are exact nearest-rank values picked
inside the database with window functions, so only a handful of rows ever reach Python.
SqlStore is the only caller: it owns the sessions and transactions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import String, Table, case, cast, exists, func, select
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
from loom_backend.store.tables import CandidateRow, MigrationRow, StepEventRow, StepResultRow

MIGRATIONS: Table = MigrationRow.__table__  # type: ignore[attr-defined]
CANDIDATES: Table = CandidateRow.__table__  # type: ignore[attr-defined]
STEP_RESULTS: Table = StepResultRow.__table__  # type: ignore[attr-defined]
EVENTS: Table = StepEventRow.__table__  # type: ignore[attr-defined]

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
        """The UTC day of a timestamp as 'YYYY-MM-DD' (SQLite stores UTC text; PostgreSQL needs the zone)."""
        if self.dialect == "postgresql":
            return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD")
        return func.substr(column, 1, 10)

    def _ms_between(self, later: Any, earlier: Any) -> Any:
        if self.dialect == "postgresql":
            return func.extract("epoch", later - earlier) * 1000.0
        # julianday() is a double of ~2.4 million days: good to ~50 µs, so round to whole milliseconds.
        return func.round((func.julianday(later) - func.julianday(earlier)) * 86_400_000.0)

    # -- overview -----------------------------------------------------------------------------

    def overview(self, session: Session, migration_id: str | None) -> MetricsOverview:
        e = EVENTS
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
        counts: dict[tuple[str, str | None], int] = {}
        for event_type, status, n in session.execute(
            select(e.c.event_type, e.c.status, func.count())
            .where(
                e.c.event_type.in_(
                    [EventType.RUN_STARTED, EventType.RUN_COMPLETED, EventType.RUN_CANCELLED, EventType.STEP_COMPLETED]
                ),
                *_by(e.c.migration_id, migration_id),
            )
            .group_by(e.c.event_type, e.c.status)
        ):
            counts[(event_type, status)] = n

        def total(event_type: EventType) -> int:
            return sum(n for (t, _), n in counts.items() if t == event_type.value)

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
            runs_started=total(EventType.RUN_STARTED),
            runs_completed=total(EventType.RUN_COMPLETED),
            runs_cancelled=total(EventType.RUN_CANCELLED),
            steps_failed=counts.get((EventType.STEP_COMPLETED.value, FAILED), 0),
            reviews_waiting=reviews_waiting,
            median_run_duration_ms=self._median_run_duration(session, migration_id),
        )

    def _median_run_duration(self, session: Session, migration_id: str | None) -> int | None:
        """From a Run's latest run_started to its run_completed (a Candidate can run again after a Cancel).

        One pass over the Runs in index order (run_id, event_type, created_at); a completed Run never restarts.
        """
        e = EVENTS
        per_run = (
            select(
                func.max(case((e.c.event_type == EventType.RUN_STARTED.value, e.c.created_at))).label("started"),
                func.max(case((e.c.event_type == EventType.RUN_COMPLETED.value, e.c.created_at))).label("done"),
            )
            .where(
                e.c.event_type.in_([EventType.RUN_STARTED, EventType.RUN_COMPLETED]),
                *_by(e.c.migration_id, migration_id),
            )
            .group_by(e.c.run_id)
            .subquery()
        )
        durations = (
            select(self._ms_between(per_run.c.done, per_run.c.started).label("ms"))
            .where(per_run.c.done.is_not(None), per_run.c.started.is_not(None))
            .subquery()
        )
        ranked = select(
            durations.c.ms,
            func.row_number().over(order_by=durations.c.ms).label("rn"),
            func.count().over().label("n"),
        ).subquery()
        value = session.execute(select(ranked.c.ms).where(ranked.c.rn == _rank(ranked.c.n, 50))).scalar()
        return None if value is None else round(value)

    # -- per Step -----------------------------------------------------------------------------

    def steps(self, session: Session, migration_id: str | None) -> StepMetricsResponse:
        e = EVENTS
        scope = _by(e.c.migration_id, migration_id)
        rows: dict[str, dict[str, Any]] = {}

        def row(name: str) -> dict[str, Any]:
            return rows.setdefault(
                name, {"count": 0, "succeeded": 0, "failures": 0, "retries": 0, "reviews": 0, "wait": 0.0}
            )

        timed: dict[str, dict[str, int]] = {}  # successful completions with a duration, per status
        for name, event_type, status, n, with_duration in session.execute(
            select(e.c.step_name, e.c.event_type, e.c.status, func.count(), func.count(e.c.duration_ms))
            .where(e.c.event_type.in_([EventType.STEP_COMPLETED, EventType.STEP_RETRIED]), *scope)
            .group_by(e.c.step_name, e.c.event_type, e.c.status)
        ):
            r = row(name)
            if event_type == EventType.STEP_RETRIED.value:
                r["retries"] += n
                continue
            r["count"] += n
            r["succeeded"] += n if status in SUCCEEDED else 0
            r["failures"] += n if status == FAILED else 0
            if status in SUCCEEDED and with_duration and name is not None:
                timed.setdefault(name, {})[status] = with_duration
        for name, (p50_ms, p95_ms) in self._duration_percentiles(session, migration_id, timed).items():
            row(name).update(p50=p50_ms, p95=p95_ms)

        review, waiting = EVENTS.alias("review"), EVENTS.alias("waiting")
        waiting_since = (
            select(func.max(waiting.c.created_at))
            .where(
                waiting.c.run_id == review.c.run_id,
                waiting.c.event_type == EventType.STEP_UPDATED.value,
                waiting.c.created_at <= review.c.created_at,
                waiting.c.step_name == review.c.step_name,
                waiting.c.status == StepStatus.AWAITING_REVIEW.value,
            )
            .scalar_subquery()
        )
        waits = (
            select(review.c.step_name, self._ms_between(review.c.created_at, waiting_since).label("ms"))
            .where(
                review.c.event_type.in_([EventType.REVIEW_APPROVED, EventType.REVIEW_REJECTED]),
                *_by(review.c.migration_id, migration_id),
            )
            .subquery()
        )
        for name, n, wait in session.execute(
            select(waits.c.step_name, func.count(waits.c.ms), func.sum(waits.c.ms)).group_by(waits.c.step_name)
        ):
            r = row(name)
            r["reviews"], r["wait"] = n, float(wait or 0)

        steps = [
            StepMetrics(
                step_name=name,
                count=r["count"],
                succeeded=r["succeeded"],
                failures=r["failures"],
                success_rate=r["succeeded"] / r["count"] if r["count"] else None,
                retries=r["retries"],
                p50_duration_ms=r.get("p50"),
                p95_duration_ms=r.get("p95"),
                reviews=r["reviews"],
                avg_review_wait_ms=round(r["wait"] / r["reviews"]) if r["reviews"] else None,
                total_review_wait_ms=round(r["wait"]),
            )
            for name, r in sorted(rows.items())
            if name is not None
        ]
        return StepMetricsResponse(migration_id=migration_id, steps=steps)

    def _duration_percentiles(
        self, session: Session, migration_id: str | None, timed: dict[str, dict[str, int]]
    ) -> dict[str, tuple[int | None, int | None]]:
        """Exact nearest-rank p50 and p95 of successful durations per Step.

        PostgreSQL has percentile_disc (nearest rank) in one grouped query. SQLite has none and sorts slowly,
        so it reads the k-th value straight off the (event_type, step_name, status, duration_ms) index, which is
        already in duration order when a Step succeeds with one status (the usual case). A Step with both
        merged and completed outcomes, or a query of one Migration (not in that index), uses a window query.
        """
        e = EVENTS
        scope = _by(e.c.migration_id, migration_id)
        successful = [
            e.c.event_type == EventType.STEP_COMPLETED.value,
            e.c.status.in_(SUCCEEDED),
            e.c.duration_ms.is_not(None),
            *scope,
        ]
        if self.dialect == "postgresql":
            return {
                name: (p50, p95)
                for name, p50, p95 in session.execute(
                    select(
                        e.c.step_name,
                        func.percentile_disc(0.5).within_group(e.c.duration_ms),
                        func.percentile_disc(0.95).within_group(e.c.duration_ms),
                    )
                    .where(*successful)
                    .group_by(e.c.step_name)
                )
            }
        percentiles: dict[str, tuple[int | None, int | None]] = {}
        for name, by_status in timed.items():
            n = sum(by_status.values())
            ranks = (_py_rank(n, 50), _py_rank(n, 95))
            if len(by_status) == 1 and migration_id is None:
                (status,) = by_status
                values = [
                    session.execute(
                        select(e.c.duration_ms)
                        .where(*successful, e.c.step_name == name, e.c.status == status)
                        .order_by(e.c.duration_ms)
                        .limit(1)
                        .offset(rank - 1)
                    ).scalar()
                    for rank in ranks
                ]
                percentiles[name] = (values[0], values[1])
                continue
            ranked = (
                select(e.c.duration_ms, func.row_number().over(order_by=e.c.duration_ms).label("rn"))
                .where(*successful, e.c.step_name == name)
                .subquery()
            )
            found = dict(session.execute(select(ranked.c.rn, ranked.c.duration_ms).where(ranked.c.rn.in_(ranks))).all())
            percentiles[name] = (found.get(ranks[0]), found.get(ranks[1]))
        return percentiles

    # -- over time ------------------------------------------------------------------------------

    def timeline(self, session: Session, migration_id: str | None, days: int, today: date) -> MetricsTimeline:
        e = EVENTS
        first = today - timedelta(days=days - 1)
        day = self._day(e.c.created_at)
        by_day = {first + timedelta(days=i): TimelineDay(date=first + timedelta(days=i)) for i in range(days)}
        for day_text, event_type, status, n in session.execute(
            select(day, e.c.event_type, e.c.status, func.count())
            .where(
                e.c.event_type.in_([EventType.RUN_STARTED, EventType.RUN_COMPLETED, EventType.STEP_COMPLETED]),
                e.c.created_at >= _midnight(first),
                e.c.created_at < _midnight(today + timedelta(days=1)),
                *_by(e.c.migration_id, migration_id),
            )
            .group_by(day, e.c.event_type, e.c.status)
        ):
            entry = by_day.get(date.fromisoformat(day_text))
            if entry is None:
                continue
            if event_type == EventType.RUN_STARTED.value:
                entry.runs_started += n
            elif event_type == EventType.RUN_COMPLETED.value:
                entry.runs_completed += n
            elif status in SUCCEEDED:
                entry.steps_completed += n
            elif status == FAILED:
                entry.steps_failed += n
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


def _by(column: Any, value: str | None) -> list[Any]:
    return [column == value] if value else []


def _rank(n: Any, percent: int) -> Any:
    """Nearest-rank percentile position, ceil(n * p / 100), in integer arithmetic both databases share."""
    return (n * percent + 99) // 100


def _py_rank(n: int, percent: int) -> int:
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
