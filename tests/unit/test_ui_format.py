"""The board's pure formatting helpers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from loom_backend.domain import (
    Burndown,
    BurndownDay,
    CandidateStatus,
    DispatchRetry,
    EventType,
    FailedStep,
    MetricsOverview,
    StatePoint,
    StepMetrics,
    TimelineDay,
)
from loom_ui.format import (
    EVENT_LABELS,
    BoardFilter,
    announce_curl,
    attention_level,
    board_query,
    burndown_rows,
    burndown_summary,
    cookie_value,
    diff_stats,
    dispatch_retry_text,
    duration,
    duration_unit,
    event_comment,
    event_detail,
    event_label,
    failure_row,
    has_activity,
    login_href,
    millis,
    next_attempt,
    overview_counters,
    parse_board_query,
    plural,
    progress_segments,
    relative_time,
    showing,
    state_rows,
    status_color,
    status_label,
    step_duration_rows,
    timeline_rows,
    unified_diff,
    waited_for,
)

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_relative_time_reads_like_speech() -> None:
    assert relative_time(None, NOW) == "—"
    assert relative_time(NOW - timedelta(seconds=3), NOW) == "just now"
    assert relative_time(NOW - timedelta(seconds=42), NOW) == "42 s ago"
    assert relative_time(NOW - timedelta(minutes=4), NOW) == "4 min ago"
    assert relative_time(NOW - timedelta(hours=3, minutes=5), NOW) == "3 h 5 min ago"
    assert relative_time(NOW - timedelta(hours=30), NOW) == "30 h ago"
    assert relative_time(NOW - timedelta(days=3), NOW) == "3 d ago"


def test_waited_for_never_goes_negative() -> None:
    assert waited_for(NOW + timedelta(seconds=5), NOW) == "0 s"
    assert waited_for(NOW - timedelta(hours=2), NOW) == "2 h"


def test_duration_picks_a_readable_unit() -> None:
    assert duration(None, NOW) == ""
    assert duration(NOW, NOW + timedelta(milliseconds=850)) == "850 ms"
    assert duration(NOW, NOW + timedelta(seconds=12.34)) == "12.3 s"
    assert duration(NOW, NOW + timedelta(minutes=4, seconds=5)) == "4 min 5 s"
    assert duration(NOW, NOW + timedelta(minutes=4)) == "4 min"
    assert duration(NOW, NOW + timedelta(hours=2, minutes=10)) == "2 h 10 min"


def test_statuses_have_labels_and_colours_with_attention_for_failed_and_review() -> None:
    assert status_label("awaiting_review") == "Awaiting review"
    assert status_label(None) == "Pending"
    assert status_label("something_new") == "Something new"
    assert status_color("failed") == "red"
    assert status_color("awaiting_review") == "amber"
    assert status_color("completed") == "green"
    assert status_color(None) == "gray"
    assert attention_level("failed") == "failed"
    assert attention_level("awaiting_review") == "review"
    assert attention_level("open") == ""


def test_plural_uses_thousands_separators() -> None:
    assert plural(1, "Candidate") == "1 Candidate"
    assert plural(5000, "Candidate") == "5,000 Candidates"


def test_progress_segments_skip_empty_statuses_in_status_order() -> None:
    segments = progress_segments({"completed": 1, "not_started": 2, "running": 0})
    assert [(s.status, s.count, s.percent) for s in segments] == [("not_started", 2, 66.67), ("completed", 1, 33.33)]
    assert progress_segments({}) == []


def test_unified_diff_tags_lines_for_colouring() -> None:
    lines = unified_diff("values.yaml", "image: v1\nreplicas: 2\n", "image: v2\nreplicas: 2\n")
    assert [d.kind for d in lines] == ["meta", "meta", "hunk", "del", "add", "ctx"]
    assert lines[0].text == "--- a/values.yaml"
    assert lines[3].text == "-image: v1"
    assert lines[4].text == "+image: v2"
    assert diff_stats(lines) == (1, 1)


def test_unified_diff_of_a_new_file_comes_from_dev_null() -> None:
    lines = unified_diff("NEW.md", "", "hello\n")
    assert lines[0].text == "--- /dev/null"
    assert diff_stats(lines) == (1, 0)


def test_board_filter_round_trips_through_the_url_query() -> None:
    f = BoardFilter(text="pay", kind="service", attention=True, metadata={"team": "payments & co"})
    query = board_query(f)
    assert query == "?q=pay&kind=service&attention=1&m.team=payments+%26+co"
    from urllib.parse import parse_qsl

    assert parse_board_query(dict(parse_qsl(query[1:]))) == f
    assert board_query(BoardFilter()) == ""
    assert not parse_board_query({}).active


def test_announce_curl_posts_to_the_registry() -> None:
    line = announce_curl("http://localhost:3000/")
    assert line.startswith("curl -X POST http://localhost:3000/api/registry/announce ")
    assert '"migratorUrl"' in line


def test_millis_reads_like_a_step_duration_and_dashes_when_missing() -> None:
    assert millis(None) == "—"
    assert millis(850) == "850 ms"
    assert millis(12_340) == "12.3 s"
    assert millis(245_000) == "4 min 5 s"
    assert millis(7_800_000) == "2 h 10 min"


def test_history_labels_say_what_happened_with_failures_called_failures() -> None:
    assert event_label("review_approved") == "Review approved"
    assert event_label("run_cancelled") == "Run cancelled"
    assert event_label("step_completed", "failed") == "Step failed"
    assert event_label("step_completed", "completed") == "Step completed"
    assert event_label("something_new") == "Something new"


def test_every_event_the_log_records_has_a_label_of_its_own() -> None:
    assert [t.value for t in EventType if t.value not in EVENT_LABELS] == []


def test_a_review_comment_is_kept_apart_from_the_other_metadata() -> None:
    metadata = {"comment": " Dashboards are green ", "attempt": "2"}
    assert event_comment(metadata) == "Dashboards are green"
    assert event_detail(metadata) == "attempt: 2"
    assert event_comment({}) == ""


def test_showing_says_nothing_when_everything_is_shown() -> None:
    assert showing(50, 120, "event") == "Showing 50 of 120 events"
    assert showing(7, 7, "event") == ""


def overview(**figures: int | None) -> MetricsOverview:
    values = {
        "migrations": 2,
        "candidates": {CandidateStatus.NOT_STARTED: 3, CandidateStatus.RUNNING: 0, CandidateStatus.COMPLETED: 1},
        "runs_started": 2,
        "runs_completed": 1,
        "runs_cancelled": 0,
        "steps_failed": 1,
        "reviews_waiting": 0,
        "median_run_duration_ms": 90_000,
    }
    return MetricsOverview.model_validate({**values, **figures})


def test_overview_counters_read_in_order_and_tint_what_wants_a_person() -> None:
    counters = {c.key: c for c in overview_counters(overview())}
    assert list(counters)[:4] == ["migrations", "candidates-not_started", "candidates-running", "candidates-completed"]
    assert counters["candidates-not_started"].value == "3"
    assert counters["candidates-not_started"].hint == "75% of 4"
    assert counters["candidates-completed"].label == "Candidates completed"
    assert counters["steps-failed"].color == "red"
    assert counters["reviews-waiting"].color == "gray"
    assert counters["median-run"].value == "1 min 30 s"
    assert {c.key: c for c in overview_counters(overview(median_run_duration_ms=None))}["median-run"].value == "—"


def test_timeline_rows_label_days_and_know_when_nothing_happened() -> None:
    rows = timeline_rows([TimelineDay(date=date(2026, 11, 1), runs_started=2), TimelineDay(date=date(2026, 11, 2))])
    assert rows[0] == {"day": "Nov 1", "runs_started": 2, "runs_completed": 0, "steps_completed": 0, "steps_failed": 0}
    assert has_activity(rows)
    assert not has_activity(rows[1:])
    assert not has_activity([])


def test_step_durations_share_one_unit_picked_by_the_longest_bar() -> None:
    assert duration_unit(900) == ("ms", 1)
    assert duration_unit(45_000) == ("s", 1000)
    assert duration_unit(600_000) == ("min", 60_000)
    steps = [
        StepMetrics(
            step_name="bump", count=3, succeeded=3, failures=0, retries=0, p50_duration_ms=4000, p95_duration_ms=9000
        ),
        StepMetrics(step_name="review", count=1, succeeded=0, failures=1, retries=1),
    ]
    assert step_duration_rows(steps) == ("s", [{"step": "bump", "p50": 4.0, "p95": 9.0}])
    assert step_duration_rows(steps[1:]) == ("ms", [])


def burndown(remaining: int, total: int = 10, projected: date | None = None, pace: float | None = None) -> Burndown:
    days = [
        BurndownDay(date=date(2026, 11, 1), remaining=total),
        BurndownDay(date=date(2026, 11, 2), remaining=remaining),
    ]
    return Burndown(total=total, remaining=remaining, days=days, pace_per_day=pace, projected_completion=projected)


def test_burndown_projects_a_straight_line_to_zero_one_day_at_a_time() -> None:
    rows = burndown_rows(burndown(4, projected=date(2026, 11, 6), pace=1.0))
    assert rows[0] == {"day": "Nov 1", "remaining": 10}
    assert rows[1] == {"day": "Nov 2", "remaining": 4, "projected": 4}
    assert [r["projected"] for r in rows[2:]] == [3.0, 2.0, 1.0, 0.0]
    assert rows[-1]["day"] == "Nov 6"
    assert burndown_rows(burndown(4)) == [{"day": "Nov 1", "remaining": 10}, {"day": "Nov 2", "remaining": 4}]
    assert burndown_rows(Burndown(total=0, remaining=0, days=[])) == []


def test_a_far_projection_is_thinned_but_keeps_today_and_the_last_day() -> None:
    rows = burndown_rows(burndown(400, total=500, projected=date(2027, 11, 2), pace=1.1), max_rows=50)
    assert len(rows) <= 52
    assert {"day": "Nov 2", "remaining": 400, "projected": 400} in rows
    assert rows[-1] == {"day": "Nov 2", "projected": 0.0}


def test_burndown_summary_says_what_is_left_and_when_it_ends() -> None:
    today = date(2026, 11, 2)
    assert burndown_summary(burndown(4, projected=date(2026, 11, 6), pace=1.5), today) == (
        "4 of 10 Candidates left · at 1.5 a day, done by Nov 6, 2026 (in 4 days)"
    )
    assert "no projected completion yet" in burndown_summary(burndown(4), today)
    assert (
        burndown_summary(burndown(0, projected=date(2026, 11, 2)), today)
        == "All 10 Candidates completed on Nov 2, 2026"
    )
    assert burndown_summary(Burndown(total=0, remaining=0, days=[]), today) == "No Candidates yet"


def test_a_failure_row_links_to_its_candidate_and_names_its_migration() -> None:
    failed = FailedStep(
        migration_id="base-image",
        candidate_id="checkout",
        run_id="base-image__checkout",
        step_name="bump",
        failed_at=NOW - timedelta(minutes=4),
    )
    row = failure_row(failed, {"base-image": "Upgrade base image"}, NOW)
    assert row.href == "/migrations/base-image/candidates/checkout"
    assert row.migration_name == "Upgrade base image"
    assert row.when == "4 min ago"
    assert row.error == "The Migrator gave no reason"


def test_cookie_value_finds_one_cookie_among_others_and_survives_junk() -> None:
    header = 'theme=dark; loom_session=abc-123_x; junk; other="q"'
    assert cookie_value(header, "loom_session") == "abc-123_x"
    assert cookie_value(header, "other") == "q"
    assert cookie_value(header, "missing") == ""
    assert cookie_value("", "loom_session") == ""


def test_login_href_remembers_the_page_to_come_back_to() -> None:
    assert (
        login_href("/migrations/base", "q=pay&m.team=core")
        == "/login?next=%2Fmigrations%2Fbase%3Fq%3Dpay%26m.team%3Dcore"
    )
    assert login_href("/inbox") == "/login?next=%2Finbox"
    assert login_href("/") == "/login"
    assert login_href("/login", "next=%2Finbox") == "/login"


def test_the_next_dispatch_attempt_reads_in_seconds_or_minutes_and_retrying_now_once_past() -> None:
    assert next_attempt(NOW + timedelta(seconds=40), NOW) == "next in 40 s"
    assert next_attempt(NOW + timedelta(seconds=39.2), NOW) == "next in 40 s"
    assert next_attempt(NOW + timedelta(minutes=4, seconds=10), NOW) == "next in 4 min"
    assert next_attempt(NOW + timedelta(milliseconds=300), NOW) == "retrying now"
    assert next_attempt(NOW - timedelta(seconds=5), NOW) == "retrying now"


def test_the_dispatch_retry_notice_names_the_attempt_and_when_it_comes() -> None:
    retry = DispatchRetry(attempt=3, error="503 Service Unavailable", next_attempt_at=NOW + timedelta(seconds=40))
    assert dispatch_retry_text(retry, NOW) == "Migrator unreachable, retrying — attempt 3, next in 40 s"


def young_burndown() -> Burndown:
    """Twenty Candidates, nine completed within minutes of 09:00, one waiting on a failed Step."""
    at = datetime(2026, 11, 30, 10, tzinfo=UTC)
    return Burndown(
        total=20,
        remaining=11,
        days=[BurndownDay(date=date(2026, 11, 30), remaining=11)],
        pace_per_day=216.0,
        projected_completion=date(2026, 11, 30),
        bucket="hour",
        states=[StatePoint(at=at, not_started=10, running=0, failed=1, completed=9)],
        pace_window_hours=24,
        pace_completions=9,
        projected_at=datetime(2026, 11, 30, 10, 23, 20, tzinfo=UTC),
    )


def test_the_summary_names_the_window_the_pace_counts_and_the_hour_it_ends() -> None:
    now = datetime(2026, 11, 30, 9, 10, tzinfo=UTC)
    assert burndown_summary(young_burndown(), now.date(), now) == (
        "11 of 20 Candidates left · at 216 a day (9 Runs completed in the last 24 h), done by Nov 30 10:23 UTC "
        "(in 2 hours)"
    )


def test_state_rows_stack_each_hour_and_project_the_rest_to_zero_in_hours() -> None:
    rows = state_rows(young_burndown())
    assert rows[0] == {"t": "10:00", "failed": 1, "running": 0, "notStarted": 10, "completed": 9, "projected": 11}
    assert rows[1:] == [{"t": "11:00", "projected": 0.0}]
    daily = young_burndown().model_copy(
        update={
            "bucket": "day",
            "states": [
                StatePoint(at=datetime(2026, 12, 1, tzinfo=UTC), not_started=1, running=0, failed=0, completed=0)
            ],
            "projected_at": datetime(2026, 12, 3, 6, tzinfo=UTC),
        }
    )
    assert [r["t"] for r in state_rows(daily)] == ["Nov 30", "Dec 1", "Dec 2", "Dec 3"]
    assert state_rows(Burndown(total=0, remaining=0, days=[])) == []
