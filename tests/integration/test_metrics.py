"""Metrics from a known event log, on real SQLite and PostgreSQL: every figure is checked by hand."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import pytest

from loom_backend.domain import (
    CandidateStatus,
    EventType,
    StepEvent,
    StepResult,
    StepStatus,
)
from loom_backend.store.metrics import DISPATCH_FAILURE_TEXT
from loom_backend.store.sql_store import SqlStore
from tests.integration.test_store import announcement

MIGRATION = "base-image"
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
DAY0 = T0.date()
_keys = itertools.count()


def event(
    store: SqlStore,
    event_type: EventType,
    at: datetime,
    candidate: str = "a",
    step: str | None = None,
    status: str | None = None,
    duration_ms: int | None = None,
    metadata: dict[str, str] | None = None,
    migration: str = MIGRATION,
    actor: str | None = None,
) -> None:
    store.append_event(
        StepEvent(
            run_id=f"{migration}__{candidate}",
            migration_id=migration,
            candidate_id=candidate,
            step_name=step,
            event_type=event_type,
            status=status,
            duration_ms=duration_ms,
            actor=actor,
            metadata=metadata or {},
            created_at=at,
        ),
        key=f"k{next(_keys)}",
    )


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


@pytest.fixture
def history(store: SqlStore) -> SqlStore:
    """Four Candidates over three days: a and d complete, b fails once then is cancelled, c's dispatch fails.

    Day 0: a runs both Steps (bump merged in 60 s, review approved after waiting 100 s), Run took 180 s.
    Day 1: b's bump fails ("boom"), is retried, completes in 3 s, then b is cancelled.
    Day 2: c's bump cannot be dispatched; d completes a Run of 60 s. Day 3 has nothing.
    """
    store.announce(announcement(["a", "b", "c", "d"]), T0 - timedelta(days=1))
    store.set_candidate_status(MIGRATION, "a", CandidateStatus.COMPLETED)
    store.set_candidate_status(MIGRATION, "c", CandidateStatus.RUNNING)
    store.set_candidate_status(MIGRATION, "d", CandidateStatus.COMPLETED)
    E = EventType
    event(store, E.RUN_STARTED, T0)
    event(store, E.STEP_DISPATCHED, T0, step="bump", status="in_progress")
    event(store, E.STEP_UPDATED, T0 + seconds(5), step="bump", status="open")
    event(store, E.STEP_COMPLETED, T0 + seconds(60), step="bump", status="merged", duration_ms=60_000)
    event(store, E.STEP_DISPATCHED, T0 + seconds(60), step="review", status="in_progress")
    event(store, E.STEP_UPDATED, T0 + seconds(70), step="review", status="awaiting_review")
    event(store, E.REVIEW_APPROVED, T0 + seconds(170), step="review")
    event(store, E.STEP_COMPLETED, T0 + seconds(170), step="review", status="completed", duration_ms=110_000)
    event(store, E.RUN_COMPLETED, T0 + seconds(180))

    t1 = T0 + timedelta(days=1)
    event(store, E.RUN_STARTED, t1, candidate="b")
    event(store, E.STEP_DISPATCHED, t1, candidate="b", step="bump", status="in_progress")
    event(store, E.STEP_COMPLETED, t1 + seconds(1), "b", "bump", "failed", 1_000, {"error": "boom"})
    event(store, E.STEP_RETRIED, t1 + seconds(30), candidate="b", step="bump")
    event(store, E.STEP_DISPATCHED, t1 + seconds(30), candidate="b", step="bump", status="in_progress")
    event(store, E.STEP_COMPLETED, t1 + seconds(33), "b", "bump", "completed", 3_000)
    event(store, E.RUN_CANCELLED, t1 + seconds(40), candidate="b")

    t2 = T0 + timedelta(days=2)
    event(store, E.RUN_STARTED, t2, candidate="c")
    event(store, E.STEP_DISPATCHED, t2, candidate="c", step="bump", status="in_progress")
    error = f"{DISPATCH_FAILURE_TEXT} after 3 attempt(s): connection refused"
    event(store, E.STEP_COMPLETED, t2 + seconds(9), "c", "bump", "failed", 9_000, {"error": error})
    event(store, E.RUN_STARTED, t2 + seconds(100), candidate="d")
    event(store, E.RUN_COMPLETED, t2 + seconds(160), candidate="d")
    return store


def test_an_empty_store_has_zeros_and_no_medians(store: SqlStore) -> None:
    overview = store.metrics_overview()
    assert (overview.migrations, overview.runs_started, overview.steps_failed, overview.reviews_waiting) == (0, 0, 0, 0)
    assert overview.candidates == dict.fromkeys(CandidateStatus, 0)
    assert overview.median_run_duration_ms is None
    assert store.step_metrics().steps == []
    timeline = store.metrics_timeline(3, DAY0)
    assert [d.date for d in timeline.days] == [DAY0 - timedelta(days=2), DAY0 - timedelta(days=1), DAY0]
    assert all(d.runs_started == d.steps_failed == 0 for d in timeline.days)
    assert store.recent_failures(10).failures == []
    burndown = store.burndown(T0)
    assert (burndown.total, burndown.remaining, burndown.pace_per_day, burndown.projected_completion) == (
        0,
        0,
        None,
        None,
    )
    snapshot = store.prometheus_snapshot()
    assert (snapshot.runs_in_flight, snapshot.step_outcomes, snapshot.dispatch_errors) == ({}, {}, 0)
    assert snapshot.callback_latency.count == 0


def test_a_single_started_run_counts_once_and_has_no_duration_yet(store: SqlStore) -> None:
    store.announce(announcement(["a"]), T0)
    event(store, EventType.RUN_STARTED, T0)
    overview = store.metrics_overview()
    assert (overview.runs_started, overview.runs_completed, overview.median_run_duration_ms) == (1, 0, None)
    day = store.metrics_timeline(1, DAY0).days
    assert [(d.date, d.runs_started, d.runs_completed) for d in day] == [(DAY0, 1, 0)]


def test_overview_counts_runs_failures_reviews_and_the_median_run(history: SqlStore) -> None:
    history.save_step_result(
        f"{MIGRATION}__c",
        MIGRATION,
        StepResult(step_name="review", candidate_id="c", status=StepStatus.AWAITING_REVIEW, started_at=T0),
    )
    overview = history.metrics_overview()
    assert overview.migrations == 1
    assert overview.candidates == {
        CandidateStatus.NOT_STARTED: 1,
        CandidateStatus.RUNNING: 1,
        CandidateStatus.COMPLETED: 2,
    }
    assert (overview.runs_started, overview.runs_completed, overview.runs_cancelled) == (4, 2, 1)
    assert overview.steps_failed == 2
    assert overview.reviews_waiting == 1
    # Runs of 180 s and 60 s: the nearest-rank median of two is the lower one.
    assert overview.median_run_duration_ms == 60_000


def test_overview_of_one_migration_ignores_the_others(history: SqlStore) -> None:
    history.announce(announcement(["x"], id="other"), T0)
    event(history, EventType.RUN_STARTED, T0, candidate="x", migration="other")
    assert history.metrics_overview("other").runs_started == 1
    assert history.metrics_overview("other").median_run_duration_ms is None
    assert history.metrics_overview(MIGRATION).runs_started == 4
    assert history.metrics_overview().migrations == 2


def test_step_metrics_give_outcomes_retries_percentiles_and_review_waits(history: SqlStore) -> None:
    steps = {s.step_name: s for s in history.step_metrics(MIGRATION).steps}
    assert list(steps) == ["bump", "review"]
    bump, review = steps["bump"], steps["review"]
    assert (bump.count, bump.succeeded, bump.failures, bump.retries) == (4, 2, 2, 1)
    assert bump.success_rate == 0.5
    # Successful bumps took 3 s and 60 s: nearest-rank p50 is 3 s, p95 is 60 s.
    assert (bump.p50_duration_ms, bump.p95_duration_ms) == (3_000, 60_000)
    assert (bump.reviews, bump.avg_review_wait_ms) == (0, None)
    assert (review.count, review.success_rate, review.p50_duration_ms, review.p95_duration_ms) == (
        1,
        1.0,
        110_000,
        110_000,
    )
    assert (review.reviews, review.avg_review_wait_ms, review.total_review_wait_ms) == (1, 100_000, 100_000)


def test_percentiles_are_nearest_rank_over_many_durations(store: SqlStore) -> None:
    store.announce(announcement(["a"]), T0)
    for i, ms in enumerate(range(100, 0, -1)):  # 1..100 ms, written out of order
        event(store, EventType.STEP_COMPLETED, T0 + seconds(i), step="bump", status="completed", duration_ms=ms)
    bump = store.step_metrics().steps[0]
    assert (bump.count, bump.p50_duration_ms, bump.p95_duration_ms) == (100, 50, 95)


def test_timeline_has_every_day_with_zeros_for_quiet_ones(history: SqlStore) -> None:
    days = history.metrics_timeline(5, DAY0 + timedelta(days=3), MIGRATION).days
    assert [(d.date, d.runs_started, d.runs_completed, d.steps_completed, d.steps_failed) for d in days] == [
        (DAY0 - timedelta(days=1), 0, 0, 0, 0),
        (DAY0, 1, 1, 2, 0),
        (DAY0 + timedelta(days=1), 1, 0, 1, 1),
        (DAY0 + timedelta(days=2), 2, 1, 0, 1),
        (DAY0 + timedelta(days=3), 0, 0, 0, 0),
    ]


def test_failures_are_newest_first_with_their_error(history: SqlStore) -> None:
    failures = history.recent_failures(10).failures
    assert [(f.candidate_id, f.step_name) for f in failures] == [("c", "bump"), ("b", "bump")]
    assert failures[0].error is not None and failures[0].error.startswith(DISPATCH_FAILURE_TEXT)
    assert failures[1].error == "boom"
    assert failures[1].failed_at == T0 + timedelta(days=1) + seconds(1)
    assert len(history.recent_failures(1).failures) == 1
    assert history.recent_failures(10, "other").failures == []


def test_prometheus_snapshot_counts_in_flight_outcomes_dispatch_errors_and_callback_latency(
    history: SqlStore,
) -> None:
    snapshot = history.prometheus_snapshot()
    assert snapshot.runs_in_flight == {MIGRATION: 1}
    assert snapshot.step_outcomes == {"merged": 1, "completed": 2, "failed": 2}
    assert snapshot.dispatch_errors == 1
    # Five dispatches answered after 5 s (bump open), 10 s (review), 1 s, 3 s and 9 s (c's failure).
    latency = snapshot.callback_latency
    assert latency.count == 5
    assert latency.sum_seconds == pytest.approx(28.0, abs=0.01)
    assert dict(zip(latency.buckets, latency.counts, strict=True))[5.0] == 3
    assert latency.counts[-1] == 5


def _completions(store: SqlStore, days_ago: list[int], today: date) -> None:
    for i, ago in enumerate(days_ago):
        cid = f"c{i}"
        store.set_candidate_status(MIGRATION, cid, CandidateStatus.COMPLETED)
        at = datetime(today.year, today.month, today.day, 15, tzinfo=UTC) - timedelta(days=ago)
        event(store, EventType.RUN_COMPLETED, at, candidate=cid)


def evening(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 18, tzinfo=UTC)


def test_burndown_walks_back_from_today_and_projects_from_the_last_24_hours(store: SqlStore) -> None:
    today = date(2026, 11, 30)
    store.announce(announcement([f"c{i}" for i in range(10)]), datetime(2026, 10, 31, 8, tzinfo=UTC))
    _completions(store, [20, 20, 13, 11, 9, 7, 5, 3, 0], today)
    burndown = store.burndown(evening(today), MIGRATION)
    assert (burndown.total, burndown.remaining) == (10, 1)
    assert burndown.days[0].date == date(2026, 10, 31) and burndown.days[-1].date == today
    remaining = {d.date: d.remaining for d in burndown.days}
    assert remaining[date(2026, 10, 31)] == 10
    assert remaining[today - timedelta(days=21)] == 10
    assert remaining[today - timedelta(days=20)] == 8
    assert remaining[today - timedelta(days=1)] == 2
    assert remaining[today] == 1
    # One completion in the last 24 hours: one a day, so the last Candidate needs a day more.
    assert (burndown.pace_per_day, burndown.pace_window_hours, burndown.pace_completions) == (1, 24, 1)
    assert burndown.projected_at == evening(today) + timedelta(days=1)
    assert burndown.projected_completion == today + timedelta(days=1)
    assert burndown.bucket == "day" and burndown.states[-1].at == evening(today).replace(hour=0) + timedelta(days=1)
    assert (burndown.states[-1].completed, burndown.states[-1].not_started) == (9, 1)


def test_a_burst_of_completions_in_a_young_migration_projects_by_that_burst(store: SqlStore) -> None:
    """Nine Runs completed within minutes today: the pace is per hour of the Migration's life, not per fortnight."""
    store.announce(announcement([f"c{i}" for i in range(20)]), T0)
    for i in range(9):
        cid = f"c{i}"
        event(store, EventType.RUN_STARTED, T0 + seconds(i), candidate=cid)
        event(store, EventType.RUN_COMPLETED, T0 + seconds(60 + 30 * i), candidate=cid)
        store.set_candidate_status(MIGRATION, cid, CandidateStatus.COMPLETED)
    event(store, EventType.RUN_STARTED, T0 + seconds(20), candidate="c9")
    event(store, EventType.STEP_COMPLETED, T0 + seconds(30), candidate="c9", step="bump", status="failed")
    now = T0 + timedelta(minutes=10)
    burndown = store.burndown(now, MIGRATION)
    assert (burndown.pace_per_day, burndown.pace_window_hours, burndown.pace_completions) == (9 * 24, 24, 9)
    assert burndown.projected_at == now + timedelta(days=11 / (9 * 24))
    assert burndown.bucket == "hour"
    assert [(p.not_started, p.running, p.failed, p.completed) for p in burndown.states] == [(10, 0, 1, 9)]


def test_burndown_without_recent_pace_has_no_projection(store: SqlStore) -> None:
    today = date(2026, 11, 30)
    store.announce(announcement([f"c{i}" for i in range(3)]), datetime(2026, 10, 1, tzinfo=UTC))
    _completions(store, [30], today)
    burndown = store.burndown(evening(today))
    assert (burndown.remaining, burndown.pace_per_day, burndown.projected_completion) == (2, None, None)


def test_a_finished_migration_projects_the_day_it_finished(store: SqlStore) -> None:
    today = date(2026, 11, 30)
    store.announce(announcement(["c0", "c1"]), datetime(2026, 11, 1, tzinfo=UTC))
    _completions(store, [6, 4], today)
    burndown = store.burndown(evening(today), MIGRATION)
    assert burndown.remaining == 0
    assert burndown.projected_completion == today - timedelta(days=4)
    assert burndown.projected_at == evening(today).replace(hour=15) - timedelta(days=4)


def test_candidate_metadata_keys_are_the_union_sorted(store: SqlStore) -> None:
    ann = announcement(["a", "b"])
    ann.candidates[1].metadata = {"tier": "1", "owner": "x"}
    store.announce(ann, T0)
    assert store.candidate_metadata_keys(MIGRATION) == ["owner", "team", "tier"]
