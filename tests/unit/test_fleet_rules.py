"""The fleet views' rules as plain functions: failure normalisation and group keys, the stuck rule, durations,
sorts, the PR state a Step reports, and a Run's progress as the Candidate table keeps it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from loom_backend.domain import (
    CandidateFilter,
    CandidateSort,
    ChecksState,
    ReviewState,
    RunProgress,
    SortField,
    StepResult,
    StepStatus,
    StuckLimits,
    StuckRule,
    failure_group_key,
    is_stuck,
    normalise_failure,
    parse_duration,
    pr_state,
    run_progress,
)

T0 = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("message", "normalised"),
    [
        ("HTTP 502 from https://git.example/api/v3/repos/1", "HTTP <n> from <url>"),
        ("chart 'payments-api' not found", "chart <value> not found"),
        ('key "a b c" is missing', "key <value> is missing"),
        ("commit 3f2a9c1e7b not on main", "commit <hex> not on main"),
        ("object 0xdeadbeef freed", "object <hex> freed"),
        ("request 123e4567-e89b-12d3-a456-426614174000 timed out after 30.5s", "request <uuid> timed out after <n>s"),
        ("  many \n  spaces\t", "many spaces"),
        ("decade is a word, not a hex id", "decade is a word, not a hex id"),
        (None, ""),
    ],
)
def test_a_failure_message_is_normalised_to_what_every_candidate_shares(message: str | None, normalised: str) -> None:
    assert normalise_failure(message) == normalised


def test_a_normalised_message_is_at_most_500_characters() -> None:
    assert len(normalise_failure("x" * 10_000)) == 500


def test_the_group_key_is_stable_and_differs_by_step_and_by_message() -> None:
    key = failure_group_key("bump", "HTTP 502 for 'a'")
    assert key == failure_group_key("bump", "HTTP 503 for 'b'"), "what varies is normalised away"
    assert len(key) == 16 and int(key, 16) >= 0
    assert key != failure_group_key("review", "HTTP 502 for 'a'")
    assert key != failure_group_key("bump", "permission denied")


def test_the_group_key_does_not_change_between_releases() -> None:
    """Keys are links an operator may keep (a bookmarked filter): sha256 of step, newline, normalised message."""
    import hashlib

    assert failure_group_key("bump", "E 42") == hashlib.sha256(b"bump\nE <n>").hexdigest()[:16]


@pytest.mark.parametrize(
    ("status", "minutes", "p95_ms", "stuck"),
    [
        (StepStatus.IN_PROGRESS, 14, None, False),  # under the 15 min floor
        (StepStatus.IN_PROGRESS, 16, None, True),  # over the floor, no p95 yet
        (StepStatus.OPEN, 16, 10 * 60_000, False),  # 3 x 10 min = 30 min
        (StepStatus.OPEN, 31, 10 * 60_000, True),
        (StepStatus.AWAITING_REVIEW, 16, 1_000, True),  # 3 x 1 s is under the floor: the floor counts
        (StepStatus.FAILED, 600, None, False),  # failed waits for a Retry: not stuck
        (StepStatus.COMPLETED, 600, None, False),
        (StepStatus.MERGED, 600, None, False),
        (None, 600, None, False),
    ],
)
def test_a_step_is_stuck_after_k_times_its_p95_with_a_floor_and_only_in_a_status_it_leaves_by_itself(
    status: StepStatus | None, minutes: int, p95_ms: int | None, stuck: bool
) -> None:
    rule = StuckRule(factor=3, floor_seconds=900)
    assert is_stuck(status, T0, T0 + timedelta(minutes=minutes), p95_ms, rule) is stuck


def test_stuck_limits_scale_each_step_by_its_own_p95() -> None:
    limits = StuckLimits(now=T0, rule=StuckRule(2, 60), p95_ms={"bump": 600_000})
    assert limits.seconds("bump") == 1200
    assert limits.seconds("review") == 60
    assert limits.flags("review", StepStatus.OPEN, T0 - timedelta(seconds=61))
    assert not limits.flags("bump", StepStatus.OPEN, T0 - timedelta(seconds=61))
    assert not limits.flags("bump", StepStatus.OPEN, None)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(90, 90.0), ("90", 90.0), ("45s", 45.0), ("30m", 1800.0), ("4h", 14_400.0), ("3d", 259_200.0), ("1w", 604_800.0)],
)
def test_a_duration_is_seconds_or_a_number_with_a_unit(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-5", "3y", "", True, "1h30m"])
def test_anything_else_is_not_a_duration(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_the_filter_reads_step_name_as_step_and_its_durations_as_seconds() -> None:
    where = CandidateFilter.model_validate({"stepName": "bump", "stepStatus": "failed", "inStatusLongerThan": "2h"})
    assert (where.step, where.step_status, where.in_status_longer_than) == ("bump", StepStatus.FAILED, 7200.0)
    assert where.on_progress and not CandidateFilter(kind="service").on_progress
    assert CandidateFilter.model_validate({"step": "review"}).model_dump(exclude_none=True)["step"] == "review"
    with pytest.raises(ValidationError):
        CandidateFilter.model_validate({"failureGroup": "not-a-key"})


@pytest.mark.parametrize(
    ("text", "sort"),
    [
        ("id", CandidateSort(SortField.ID)),
        ("-timeInStatus", CandidateSort(SortField.TIME_IN_STATUS, descending=True)),
        ("metadata.team", CandidateSort(SortField.METADATA, metadata_key="team")),
        ("-metadata.owner.name", CandidateSort(SortField.METADATA, True, "owner.name")),
    ],
)
def test_a_sort_is_one_field_with_an_optional_minus(text: str, sort: CandidateSort) -> None:
    assert CandidateSort.parse(text) == sort


@pytest.mark.parametrize("text", ["", "-", "--id", "colour", "metadata.", "id,kind"])
def test_an_unknown_sort_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        CandidateSort.parse(text)


def test_the_pr_state_is_read_from_checks_review_and_mergeable() -> None:
    state = pr_state({"checks": "Failing", "review": "changes_requested", "mergeable": "false"})
    assert (state.checks, state.review, state.mergeable) == (ChecksState.FAILING, ReviewState.CHANGES_REQUESTED, False)
    assert pr_state({"checks": "green", "mergeable": "yes"}) == pr_state({})


def test_the_github_helpers_words_are_read_too() -> None:
    """loom_migrator/github.py reports checks as GitHub does (success/failure), review none, mergeable unknown."""
    state = pr_state({"checks": "success", "review": "none", "mergeable": "unknown"})
    assert (state.checks, state.review, state.mergeable) == (ChecksState.PASSING, None, None)
    assert pr_state({"checks": "failure"}).checks is ChecksState.FAILING


def result(name: str, status: StepStatus, at: datetime, **metadata: str) -> StepResult:
    pr = metadata.pop("pr", None)
    return StepResult(
        step_name=name, candidate_id="c", status=status, metadata=metadata, pr_url=pr, started_at=at, updated_at=at
    )


def test_a_runs_progress_keeps_status_since_while_the_status_stays_and_restarts_it_when_it_changes() -> None:
    first = run_progress([result("bump", StepStatus.OPEN, T0, pr="https://pr/1", checks="pending")], None, T0)
    assert (first.step_name, first.step_status, first.status_since) == ("bump", StepStatus.OPEN, T0)
    assert (first.pr_url, first.pr_opened_at, first.checks) == ("https://pr/1", T0, ChecksState.PENDING)
    later = T0 + timedelta(hours=1)
    same = run_progress([result("bump", StepStatus.OPEN, later, pr="https://pr/1", checks="passing")], first, later)
    assert same.status_since == T0, "a metadata update is not a new status"
    assert (same.pr_opened_at, same.checks) == (T0, ChecksState.PASSING)
    moved = run_progress(
        [
            result("bump", StepStatus.MERGED, later, pr="https://pr/1", checks="passing"),
            result("review", StepStatus.FAILED, later, error="HTTP 500 for 'c'"),
        ],
        same,
        later,
    )
    assert (moved.step_name, moved.step_status, moved.status_since) == ("review", StepStatus.FAILED, later)
    assert moved.pr_url == "https://pr/1" and moved.checks == ChecksState.PASSING, "from the latest Step with a PR"
    assert moved.failure_message == "HTTP 500 for 'c'"
    assert moved.failure_group == failure_group_key("review", "HTTP 500 for 'c'")


def test_a_run_without_results_has_no_progress() -> None:
    assert run_progress([], None, T0) == RunProgress()
