"""The board's Candidate table and failure groups without Reflex: the URL round trip, sorting, rows and groups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest

from loom_backend.domain import (
    CandidateStatus,
    CandidateView,
    ChecksState,
    FailureGroup,
    ReviewState,
    SortField,
    StepStatus,
)
from loom_ui.views.fleet import (
    TableQuery,
    aria_sort,
    candidate_filter,
    failure_group_view,
    next_sort,
    page_count,
    parse_table_query,
    pr_marks,
    range_text,
    row_view,
    table_params,
    table_query,
)

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def test_a_table_query_survives_the_url_round_trip() -> None:
    t = TableQuery(
        q="pay",
        step="bump",
        step_status="failed",
        in_status="4h",
        pr_age="3d",
        checks="failing",
        review="approved",
        mergeable="false",
        failure="timeout",
        failure_group="0123456789abcdef",
        stuck=True,
        metadata={"team": "payments", "tier": "1"},
        sort="-timeInStatus",
        page=3,
        cols=["owner", "tier"],
    )
    url = table_query(t)
    assert url.startswith("?view=table&")
    assert parse_table_query(dict(parse_qsl(urlsplit(url).query))) == t


def test_the_default_view_has_a_short_url() -> None:
    assert table_query(TableQuery()) == "?view=table"
    assert table_params(TableQuery(sort="id", page=1)) == {"view": "table"}


def test_what_a_url_gets_wrong_falls_back_to_the_default() -> None:
    t = parse_table_query({"view": "table", "page": "-2", "sort": "; drop", "cols": "a,a,b,,c"})
    assert (t.page, t.sort, t.cols) == (1, "id", ["a", "b", "c"])
    assert parse_table_query({"page": "two"}).page == 1


def test_a_table_query_becomes_the_services_filter() -> None:
    f = candidate_filter(
        TableQuery(step="bump", step_status="failed", in_status="4h", mergeable="true", stuck=True, metadata={"a": "b"})
    )
    assert f.step == "bump" and f.step_status is StepStatus.FAILED
    assert f.in_status_longer_than == 4 * 3600
    assert f.mergeable is True and f.stuck is True and f.metadata == {"a": "b"}
    assert candidate_filter(TableQuery()).on_progress is False


def test_a_wrong_filter_value_says_which_filter_in_the_tables_words() -> None:
    with pytest.raises(ValueError, match="In status longer than"):
        candidate_filter(TableQuery(in_status="soon"))


def test_clicking_a_header_sorts_ascending_then_descending() -> None:
    assert next_sort("id", "kind") == "kind"
    assert next_sort("kind", "kind") == "-kind"
    assert next_sort("-kind", "kind") == "kind"
    assert [aria_sort("-pr", c) for c in ("pr", "id")] == ["descending", "none"]
    assert aria_sort("pr", "pr") == "ascending"


def test_every_sort_the_table_offers_is_one_the_service_takes() -> None:
    from loom_backend.domain import CandidateSort
    from loom_ui.views.fleet import SORTABLE

    for key, _ in SORTABLE:
        assert CandidateSort.parse(f"-{key}").descending
    assert CandidateSort.parse("metadata.owner").by is SortField.METADATA


def test_the_range_reads_like_a_sentence_at_ten_thousand() -> None:
    assert range_text(1, 10_000) == "1\u201350 of 10,000"
    assert range_text(200, 10_000) == "9,951\u201310,000 of 10,000"
    assert range_text(2, 60) == "51\u201360 of 60"
    assert range_text(1, 0) == "0 of 0"
    assert (page_count(10_000), page_count(0), page_count(51)) == (200, 1, 2)


def test_a_row_shows_the_step_its_time_in_status_the_pr_state_and_chosen_metadata() -> None:
    view = CandidateView(
        id="checkout",
        kind="service",
        metadata={"owner": "payments", "tier": "1"},
        status=CandidateStatus.RUNNING,
        current_step="bump",
        current_step_status=StepStatus.OPEN,
        pr_url="https://github.com/acme/checkout/pull/7",
        status_since=NOW - timedelta(hours=3),
        pr_opened_at=NOW - timedelta(days=2),
        checks=ChecksState.FAILING,
        review=ReviewState.APPROVED,
        mergeable=False,
        last_event_at=NOW - timedelta(minutes=4),
        stuck=True,
    )
    row = row_view("m1", view, NOW, ["tier", "missing"])
    assert row.href == "/migrations/m1/candidates/checkout"
    assert (row.step, row.step_label, row.in_status) == ("bump", "PR open", "3 h")
    assert (row.pr_age, row.last_event) == ("2 d", "4 min ago")
    assert (row.pr.checks, row.pr.checks_label, row.pr.review, row.pr.mergeable) == (
        "✗",
        "Checks failing",
        "Approved",
        "Conflicts",
    )
    assert row.meta == ["1", ""] and row.stuck


def test_a_candidate_without_a_run_has_an_empty_row_but_its_id() -> None:
    row = row_view("m1", CandidateView(id="a", kind="service"), NOW, [])
    assert (row.id, row.step, row.in_status, row.pr_url, row.last_event, row.stuck) == ("a", "", "", "", "", False)
    assert pr_marks(None, None, None).checks == ""


def test_a_failure_group_links_its_examples_and_says_how_many_more() -> None:
    group = FailureGroup(
        key="0123456789abcdef", step_name="bump", message="timeout after <n>s", count=7, examples=["a", "b"]
    )
    g = failure_group_view("m1", group)
    assert (g.step, g.count_text, g.more) == ("bump", "7 Candidates", "and 5 more")
    assert [e.href for e in g.examples] == ["/migrations/m1/candidates/a", "/migrations/m1/candidates/b"]


# -- stuck and PR state beyond the table: the card, the timeline, Needs me, the metrics ---------------------------


def test_a_card_shows_stuck_and_its_prs_checks_review_and_mergeable() -> None:
    from loom_ui.views.board import card_view

    view = CandidateView(
        id="a",
        kind="service",
        status=CandidateStatus.RUNNING,
        current_step="bump",
        current_step_status=StepStatus.OPEN,
        pr_url="https://git/a/pull/1",
        checks=ChecksState.PASSING,
        review=ReviewState.CHANGES_REQUESTED,
        mergeable=True,
        stuck=True,
    )
    card = card_view("m1", view, NOW)
    assert card.stuck
    assert (card.pr.checks, card.pr.checks_color, card.pr.review, card.pr.mergeable) == (
        "✓",
        "green",
        "Changes requested",
        "Mergeable",
    )


def test_the_timeline_shows_pr_state_as_marks_not_metadata_and_marks_the_stuck_step() -> None:
    from loom_backend.domain import StepDefinition, StepResult
    from loom_ui.views.candidate import step_views

    plan = [StepDefinition(name="bump", migrator_app="m"), StepDefinition(name="review", migrator_app="m")]
    bump = StepResult(
        step_name="bump",
        candidate_id="a",
        status=StepStatus.OPEN,
        pr_url="https://git/a/pull/1",
        metadata={"checks": "pending", "review": "approved", "mergeable": "false", "branch": "loom/bump"},
        started_at=NOW,
    )
    steps = step_views(plan, [bump], CandidateStatus.RUNNING, NOW, stuck_step="bump")
    assert (steps[0].pr.checks, steps[0].pr.review, steps[0].pr.mergeable) == ("…", "Approved", "Conflicts")
    assert [m.key for m in steps[0].meta] == ["branch"]
    assert [s.stuck for s in steps] == [True, False]


def test_needs_me_lists_a_stuck_step_and_flags_stuck_beside_another_reason() -> None:
    from loom_backend.domain import StepResult
    from loom_backend.service import WaitingStep
    from loom_ui.views.inbox import waiting_row

    step = StepResult(step_name="bump", candidate_id="a", status=StepStatus.IN_PROGRESS)
    alone = waiting_row(WaitingStep("m1", "M", step, "stuck", NOW - timedelta(hours=5), True), NOW)
    assert (alone.reason_label, alone.color, alone.stuck) == ("Stuck", "orange", False)
    review = StepResult(step_name="review", candidate_id="a", status=StepStatus.AWAITING_REVIEW)
    beside = waiting_row(WaitingStep("m1", "M", review, "review", NOW - timedelta(days=2), True), NOW)
    assert (beside.reason_label, beside.stuck) == ("Awaiting review", True)


def test_the_metrics_count_stuck_steps() -> None:
    from loom_backend.domain import MetricsOverview
    from loom_ui.format import overview_counters

    overview = MetricsOverview.model_validate(
        {
            "migrations": 1,
            "candidates": {},
            "runsStarted": 3,
            "runsCompleted": 0,
            "runsCancelled": 0,
            "stepsFailed": 0,
            "reviewsWaiting": 0,
            "stuckSteps": 2,
        }
    )
    stuck = next(c for c in overview_counters(overview) if c.key == "stuck-steps")
    assert (stuck.value, stuck.color) == ("2", "amber")


def test_a_long_failure_is_clipped_in_the_row_and_whole_in_its_title() -> None:
    view = CandidateView(id="a", kind="service", current_step="bump", failure_message="x" * 3000)
    row = row_view("m1", view, NOW, [])
    assert len(row.failure) == 160 and row.failure.endswith("…")
    assert len(row.failure_full) == 3000
