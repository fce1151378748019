"""The burndown's rules without a database: the recent completion pace, the buckets, the states replayed."""

from datetime import UTC, datetime, timedelta

import pytest

from loom_backend.domain import (
    EventType,
    StateEvent,
    StatePoint,
    completion_pace,
    state_buckets,
    state_series,
)

NOW = datetime(2026, 11, 30, 15, 30, tzinfo=UTC)
E = EventType


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def test_nine_runs_completed_within_minutes_today_are_nine_an_hour_not_point_six_a_day() -> None:
    started = NOW - minutes(12)
    done = [started + minutes(2 + i) for i in range(9)]
    pace = completion_pace(done, NOW, started)
    assert pace is not None
    assert (pace.window_hours, pace.completions) == (24, 9)
    assert pace.per_day == pytest.approx(9 * 24)  # twelve minutes are read as the hour MIN_PACE_SPAN is


def test_a_migration_running_for_six_hours_counts_its_completions_over_those_six_hours() -> None:
    done = [NOW - timedelta(hours=h) for h in (1, 2, 3)]
    pace = completion_pace(done, NOW, NOW - timedelta(hours=6))
    assert pace is not None and pace.per_day == pytest.approx(12)


def test_an_old_migration_counts_the_last_24_hours_only() -> None:
    done = [NOW - timedelta(hours=h) for h in (2, 20, 30, 50)]
    pace = completion_pace(done, NOW, NOW - timedelta(days=40))
    assert pace is not None and (pace.per_day, pace.window_hours, pace.completions) == (2, 24, 2)


def test_without_a_completion_today_the_last_week_sets_the_pace() -> None:
    done = [NOW - timedelta(days=d) for d in (2, 3, 6, 9)]
    pace = completion_pace(done, NOW, NOW - timedelta(days=40))
    assert pace is not None and (pace.per_day, pace.window_hours, pace.completions) == (pytest.approx(3 / 7), 168, 3)


def test_nothing_completed_this_week_is_no_pace() -> None:
    assert completion_pace([NOW - timedelta(days=8)], NOW, NOW - timedelta(days=40)) is None
    assert completion_pace([], NOW, None) is None


def test_a_young_migration_is_bucketed_by_the_hour_up_to_the_current_one() -> None:
    bucket, ends = state_buckets(NOW - minutes(150), NOW)
    assert bucket == "hour"
    assert ends == [datetime(2026, 11, 30, h, tzinfo=UTC) for h in (14, 15, 16)]


def test_an_older_migration_is_bucketed_by_utc_day_up_to_today() -> None:
    bucket, ends = state_buckets(NOW - timedelta(days=3, hours=1), NOW)
    assert bucket == "day"
    assert ends == [datetime(2026, 11, d, tzinfo=UTC) for d in (28, 29, 30)] + [datetime(2026, 12, 1, tzinfo=UTC)]


def test_the_log_replays_into_states_at_each_bucket_end() -> None:
    t = NOW - timedelta(hours=3)
    h = timedelta(hours=1)
    log = [
        StateEvent("a", E.RUN_STARTED, None, t),
        StateEvent("b", E.RUN_STARTED, None, t),
        StateEvent("c", E.RUN_STARTED, None, t),
        StateEvent("a", E.RUN_COMPLETED, None, t + minutes(10)),
        StateEvent("b", E.STEP_COMPLETED, "failed", t + minutes(20)),
        StateEvent("c", E.STEP_COMPLETED, "completed", t + minutes(20)),
        StateEvent("b", E.STEP_RETRIED, None, t + h + minutes(5)),
        StateEvent("c", E.RUN_CANCELLED, None, t + h + minutes(5)),
        StateEvent("b", E.STEP_COMPLETED, "failed", t + 2 * h + minutes(5)),
    ]
    ends = [t + h, t + 2 * h, t + 3 * h]
    assert state_series(log, 5, ends) == [
        StatePoint(at=t + h, not_started=2, running=1, failed=1, completed=1),
        StatePoint(at=t + 2 * h, not_started=3, running=1, failed=0, completed=1),
        StatePoint(at=t + 3 * h, not_started=3, running=0, failed=1, completed=1),
    ]


def test_a_failure_after_completion_or_before_a_start_changes_nothing() -> None:
    log = [
        StateEvent("a", E.STEP_COMPLETED, "failed", NOW - minutes(30)),
        StateEvent("b", E.RUN_STARTED, None, NOW - minutes(20)),
        StateEvent("b", E.RUN_COMPLETED, None, NOW - minutes(10)),
        StateEvent("b", E.STEP_COMPLETED, "failed", NOW - minutes(5)),
    ]
    (point,) = state_series(log, 2, [NOW])
    assert (point.not_started, point.running, point.failed, point.completed) == (1, 0, 0, 1)
