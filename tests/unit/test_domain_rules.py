"""The domain's rules, tested as plain functions: no Temporal, no database, no Reflex."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import TypeAdapter, ValidationError

from loom_backend.domain import (
    ACTION_STEP_STATUS,
    CALLBACK_STEP_STATUSES,
    Candidate,
    CandidateStatus,
    MigrationAnnouncement,
    MigrationSlug,
    RunPosition,
    Slug,
    StepAction,
    StepDefinition,
    StepResult,
    StepStatus,
    StepStatusEvent,
    action_refusal,
    available_actions,
    callback_refusal,
    current_step,
    current_step_index,
    merge_rediscovered,
    parse_run_id,
    run_id,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN = "acme__checkout"
STEP_STATUSES: list[StepStatus | None] = [None, *StepStatus]


def position(waiting_on: str | None = "b", **statuses: StepStatus | None) -> RunPosition:
    steps = statuses or {"a": StepStatus.MERGED, "b": StepStatus.IN_PROGRESS, "c": None}
    return RunPosition(run_id=RUN, candidate_id="checkout", steps=steps, waiting_on=waiting_on)


def on_b(status: StepStatus | None) -> RunPosition:
    """A Run waiting on Step b, in the given status."""
    return position(a=StepStatus.MERGED, b=status, c=None)


def event(step: str, status: StepStatus, candidate_id: str = "checkout") -> StepStatusEvent:
    return StepStatusEvent(step_name=step, candidate_id=candidate_id, status=status)


def test_importing_the_domain_pulls_in_neither_temporal_nor_sqlalchemy_nor_reflex() -> None:
    code = (
        "import sys, loom_backend.domain\n"
        "heavy = ('reflex', 'temporalio', 'sqlalchemy', 'sqlmodel')\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""


# -- callbacks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("waiting", [StepStatus.IN_PROGRESS, StepStatus.OPEN])
@pytest.mark.parametrize("status", sorted(CALLBACK_STEP_STATUSES))
def test_a_step_in_progress_or_open_takes_every_callback(waiting: StepStatus, status: StepStatus) -> None:
    assert callback_refusal(on_b(waiting), event("b", status)) is None


def test_a_step_awaiting_review_takes_only_a_failure_from_the_migrator() -> None:
    assert callback_refusal(on_b(StepStatus.AWAITING_REVIEW), event("b", StepStatus.FAILED)) is None
    for status in (StepStatus.OPEN, StepStatus.MERGED, StepStatus.COMPLETED):
        assert callback_refusal(on_b(StepStatus.AWAITING_REVIEW), event("b", status)) == (
            "Step 'b' awaits an operator's review; only an approval moves it to completed"
        )


def test_a_failed_step_refuses_callbacks_until_it_is_retried() -> None:
    assert callback_refusal(on_b(StepStatus.FAILED), event("b", StepStatus.COMPLETED)) == (
        "Step 'b' is failed; a 'completed' callback does not apply (retry the Step first)"
    )


@pytest.mark.parametrize("done", [StepStatus.MERGED, StepStatus.COMPLETED])
def test_a_finished_step_refuses_a_different_callback(done: StepStatus) -> None:
    other = StepStatus.OPEN
    assert callback_refusal(on_b(done), event("b", other)) == f"Step 'b' is {done}; a 'open' callback does not apply"


def test_the_same_callback_again_applies_as_a_repeat_even_after_the_run_moved_on() -> None:
    assert callback_refusal(position(), event("a", StepStatus.MERGED)) is None
    assert callback_refusal(position(waiting_on=None), event("a", StepStatus.MERGED)) is None


def test_a_callback_for_a_step_the_run_does_not_wait_on_is_refused_naming_where_it_is() -> None:
    assert callback_refusal(position(), event("a", StepStatus.COMPLETED)) == (
        "Run 'acme__checkout' is not waiting on Step 'a'; it is on Step 'b'"
    )
    assert callback_refusal(position(waiting_on=None), event("c", StepStatus.OPEN)) == (
        "Run 'acme__checkout' is not waiting on Step 'c'; it is not waiting on any Step"
    )


def test_a_callback_for_an_unknown_step_or_another_candidate_is_refused() -> None:
    assert callback_refusal(position(), event("zz", StepStatus.OPEN)) == "Run 'acme__checkout' has no Step named 'zz'"
    assert callback_refusal(position(), event("b", StepStatus.OPEN, candidate_id="billing")) == (
        "The callback is for Candidate 'billing' but Run 'acme__checkout' runs Candidate 'checkout'"
    )


# -- operator actions --------------------------------------------------------------------------


@pytest.mark.parametrize("action", list(StepAction))
@pytest.mark.parametrize("status", STEP_STATUSES)
def test_each_action_fits_exactly_one_status_of_the_step_the_run_waits_on(
    action: StepAction, status: StepStatus | None
) -> None:
    refusal = action_refusal(on_b(status), action, "b")
    assert (refusal is None) == (status == ACTION_STEP_STATUS[action])


@pytest.mark.parametrize(
    ("action", "status", "message"),
    [
        (StepAction.RETRY, StepStatus.IN_PROGRESS, "Step 'b' is in_progress; only a failed Step can be retried"),
        (
            StepAction.APPROVE,
            StepStatus.OPEN,
            "Step 'b' is open; only a Step awaiting review can be approved or rejected",
        ),
        (StepAction.REJECT, None, "Step 'b' is not started; only a Step awaiting review can be approved or rejected"),
        (
            StepAction.MARK_MERGED,
            StepStatus.FAILED,
            "Step 'b' is failed; only a Step with an open PR can be marked merged",
        ),
    ],
)
def test_a_refused_action_says_what_the_step_is_and_what_would_fit(
    action: StepAction, status: StepStatus | None, message: str
) -> None:
    assert action_refusal(on_b(status), action, "b") == message


def test_an_action_on_a_step_the_run_does_not_wait_on_is_refused() -> None:
    failed_earlier = position(a=StepStatus.FAILED, b=StepStatus.IN_PROGRESS)
    assert action_refusal(failed_earlier, StepAction.RETRY, "a") == (
        "Run 'acme__checkout' is not waiting on Step 'a'; it is on Step 'b'"
    )
    assert action_refusal(position(), StepAction.RETRY, "zz") == "Run 'acme__checkout' has no Step named 'zz'"


# -- what the pages offer ----------------------------------------------------------------------


def test_a_running_candidate_offers_the_actions_its_step_status_fits() -> None:
    offered = {status: available_actions(CandidateStatus.RUNNING, status) for status in STEP_STATUSES}
    assert offered == {
        None: frozenset(),
        StepStatus.IN_PROGRESS: frozenset(),
        StepStatus.OPEN: {StepAction.MARK_MERGED},
        StepStatus.AWAITING_REVIEW: {StepAction.APPROVE, StepAction.REJECT},
        StepStatus.MERGED: frozenset(),
        StepStatus.COMPLETED: frozenset(),
        StepStatus.FAILED: {StepAction.RETRY},
    }


@pytest.mark.parametrize("candidate", [CandidateStatus.NOT_STARTED, CandidateStatus.COMPLETED])
@pytest.mark.parametrize("status", STEP_STATUSES)
def test_a_candidate_without_a_running_run_offers_no_action(
    candidate: CandidateStatus, status: StepStatus | None
) -> None:
    assert available_actions(candidate, status) == frozenset()


@pytest.mark.parametrize("status", STEP_STATUSES)
def test_the_pages_offer_exactly_what_the_run_would_accept(status: StepStatus | None) -> None:
    accepted = {a for a in StepAction if action_refusal(on_b(status), a, "b") is None}
    assert available_actions(CandidateStatus.RUNNING, status) == accepted


# -- the current Step --------------------------------------------------------------------------


def result(name: str, status: StepStatus) -> StepResult:
    return StepResult(step_name=name, candidate_id="checkout", status=status)


def test_the_current_step_is_the_first_that_has_not_succeeded() -> None:
    results = [result("a", StepStatus.MERGED), result("b", StepStatus.FAILED), result("c", StepStatus.IN_PROGRESS)]
    assert current_step(results) == results[1]
    assert current_step_index([StepStatus.COMPLETED, StepStatus.AWAITING_REVIEW]) == 1


def test_when_every_step_succeeded_the_current_step_is_the_last() -> None:
    results = [result("a", StepStatus.MERGED), result("b", StepStatus.COMPLETED)]
    assert current_step(results) == results[-1]


def test_a_run_without_step_results_has_no_current_step() -> None:
    assert current_step([]) is None
    assert current_step_index([]) is None


# -- re-discovery ------------------------------------------------------------------------------


def test_rediscovery_replaces_not_started_candidates_drops_absent_ones_and_keeps_those_with_a_run() -> None:
    existing = {
        "old": CandidateStatus.NOT_STARTED,
        "gone": CandidateStatus.NOT_STARTED,
        "busy": CandidateStatus.RUNNING,
        "done": CandidateStatus.COMPLETED,
    }
    incoming = [Candidate(id=i, kind="service") for i in ("new", "busy", "old")]
    merge = merge_rediscovered(existing, incoming)
    assert [(position, c.id) for position, c in merge.upsert] == [(0, "new"), (2, "old")]
    assert merge.delete == ["gone"]
    assert sorted(merge.keep) == ["busy", "done"]


def test_rediscovering_into_an_empty_migration_adds_everything_in_order() -> None:
    merge = merge_rediscovered({}, [Candidate(id="a", kind="k"), Candidate(id="b", kind="k")])
    assert [(p, c.id) for p, c in merge.upsert] == [(0, "a"), (1, "b")]
    assert (merge.delete, merge.keep) == ([], [])


# -- Run ids -----------------------------------------------------------------------------------


def test_a_run_id_splits_at_its_first_separator() -> None:
    assert parse_run_id("acme__svc__api") == ("acme", "svc__api")
    assert parse_run_id(run_id("acme", "svc__api")) == ("acme", "svc__api")


@pytest.mark.parametrize("malformed", ["", "acme", "acme_svc", "__svc", "acme__"])
def test_a_malformed_run_id_is_a_value_error(malformed: str) -> None:
    with pytest.raises(ValueError, match="is not a Run id"):
        parse_run_id(malformed)


@pytest.mark.parametrize("bad", ["acme__svc", "acme_", "a__", "a___b"])
def test_a_migration_id_may_not_contain_the_separator_nor_end_with_an_underscore(bad: str) -> None:
    with pytest.raises(ValidationError) as refused:
        MigrationAnnouncement(
            id=bad,
            name="n",
            description="d",
            steps=[StepDefinition(name="s", migrator_app="m")],
            candidates=[Candidate(id="svc__api", kind="k")],
            migrator_url="http://m",
        )
    (error,) = refused.value.errors()
    assert error["loc"] == ("id",)
    assert "must not contain '__'" in error["msg"]


def test_every_valid_migration_and_candidate_id_round_trips_through_the_run_id() -> None:
    """Exhaustive over short ids of the characters that matter: no two pairs share a Run id."""
    migration_ids, candidate_ids = TypeAdapter(MigrationSlug), TypeAdapter(Slug)

    def valid(adapter: TypeAdapter[str], text: str) -> bool:
        try:
            adapter.validate_python(text)
        except ValidationError:
            return False
        return True

    words = ["".join(w) for n in range(1, 5) for w in itertools.product("a_-", repeat=n)]
    migrations = [w for w in words if valid(migration_ids, w)]
    candidates = [w for w in words if valid(candidate_ids, w)]
    assert "a_a" in migrations and "a-" in migrations and "a__a" in candidates
    seen: dict[str, tuple[str, str]] = {}
    for pair in itertools.product(migrations, candidates):
        the_run = run_id(*pair)
        assert parse_run_id(the_run) == pair
        assert seen.setdefault(the_run, pair) == pair


def test_a_runs_workflow_link_names_the_namespace_and_the_run_id_escaped() -> None:
    from loom_backend.domain import workflow_ui_url

    assert workflow_ui_url("http://localhost:8233/", "default", "base-image__checkout") == (
        "http://localhost:8233/namespaces/default/workflows/base-image__checkout"
    )
    assert workflow_ui_url("https://t.example/ui", "prod ns", "m__a/b") == (
        "https://t.example/ui/namespaces/prod%20ns/workflows/m__a%2Fb"
    )
    assert workflow_ui_url(None, "default", "m__c") is None
    assert workflow_ui_url("", "default", "m__c") is None
