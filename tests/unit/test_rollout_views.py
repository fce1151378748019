"""The rollout page's pure parts: a policy typed into the form, and a bulk action's impact and progress."""

from __future__ import annotations

from datetime import UTC, datetime

from loom_backend.rollout import (
    BulkAction,
    BulkOperation,
    BulkOutcome,
    BulkOutcomeKind,
    BulkState,
    GroupCap,
    RolloutCounts,
    RolloutPhase,
    RolloutPolicy,
    RolloutStatus,
    WaveView,
)
from loom_backend.service import WaitingRollout
from loom_ui.views.inbox import rollout_row
from loom_ui.views.rollout import (
    ACTION_LABELS,
    VERBS,
    PolicyForm,
    bulk_impact,
    bulk_progress,
    parse_policy,
    policy_form,
    refusal_field,
)


def test_a_policy_round_trips_through_the_form_and_keeps_its_dependencies() -> None:
    policy = RolloutPolicy(
        max_running=5,
        starts_per_hour=30,
        max_running_per_group=GroupCap(key="owner", max=2),
        waves=[3, "10%", "100%"],
        gate="auto",
        soak_minutes=15,
        order="tier",
        pause_after_failures=3,
        depends_on={"api": ["db"]},
        auto_retry={"attempts": 2, "after_minutes": 1.5},
        auto_approve={"step": "review", "from_wave": 3},
    )
    form = policy_form(policy)
    assert (form.retry_attempts, form.retry_after_minutes, form.approve_step, form.approve_from_wave) == (
        "2",
        "1.5",
        "review",
        "3",
    )
    assert form.waves == "3, 10%, 100%" and form.group_key == "owner" and form.gate == "auto"
    parsed, refusals = parse_policy(form, policy.depends_on)
    assert refusals == {} and parsed == policy


def test_the_form_names_the_field_it_refuses() -> None:
    assert parse_policy(PolicyForm(max_running=""), {})[1] == {"max_running": "Say how many Runs may be open at once"}
    assert "group_key" in parse_policy(PolicyForm(group_key="owner"), {})[1]
    assert parse_policy(PolicyForm(group_key="owner", group_max="nine"), {})[1] == {"group_max": "Give a whole number"}
    _, refusals = parse_policy(PolicyForm(waves="3, 150%"), {})
    assert "percentage" in refusals["waves"]
    _, refusals = parse_policy(PolicyForm(max_running="0"), {})
    assert set(refusals) == {"max_running"}
    assert refusal_field("maxRunningPerGroup: no Candidate has the key 'team'") == "group_key"
    assert refusal_field("something else") == ""
    assert refusal_field("autoApprove.step: this Migration has no Step named 'x'") == "approve_step"
    assert set(parse_policy(PolicyForm(retry_attempts="0"), {})[1]) == {"retry_attempts"}
    assert set(parse_policy(PolicyForm(retry_attempts="1", retry_after_minutes="-2"), {})[1]) == {"retry_after_minutes"}
    assert set(parse_policy(PolicyForm(retry_after_minutes="5"), {})[1]) == {"retry_attempts"}
    assert set(parse_policy(PolicyForm(approve_step="review", approve_from_wave="0"), {})[1]) == {"approve_from_wave"}


def test_an_empty_form_is_one_wave_with_a_manual_gate_and_no_optional_caps() -> None:
    policy, refusals = parse_policy(PolicyForm(), {})
    assert refusals == {} and policy == RolloutPolicy(max_running=10)


def _operation(*outcomes: BulkOutcome, state: BulkState = BulkState.RUNNING) -> BulkOperation:
    return BulkOperation(
        id="op",
        migration_id="m",
        action=BulkAction.START,
        actor="olga",
        state=state,
        created_at=datetime(2026, 12, 1, tzinfo=UTC),
        outcomes=list(outcomes),
    )


def test_a_preview_says_how_many_it_acts_on_and_why_it_skips_the_others() -> None:
    operation = _operation(
        *[BulkOutcome(candidate_id=f"a{i}") for i in range(143)],
        *[BulkOutcome(candidate_id=f"r{i}", outcome="skipped", message="already running") for i in range(12)],
        *[BulkOutcome(candidate_id=f"x{i}", outcome="skipped", message="lacks input X") for i in range(3)],
    )
    assert bulk_impact(operation) == "starts 143; skips 12: already running; skips 3: lacks input X"


def test_progress_counts_what_was_done_refused_and_skipped() -> None:
    operation = _operation(
        BulkOutcome(candidate_id="a", outcome=BulkOutcomeKind.DONE),
        BulkOutcome(candidate_id="b", outcome=BulkOutcomeKind.FAILED, message="not running"),
        BulkOutcome(candidate_id="c"),
        BulkOutcome(candidate_id="d", outcome=BulkOutcomeKind.SKIPPED, message="already running"),
    )
    assert bulk_progress(operation) == "Working: 2 of 3 Candidates · 1 refused · 1 skipped"
    done = operation.model_copy(update={"state": BulkState.DONE, "outcomes": operation.outcomes[:1]})
    assert bulk_progress(done) == "Done: 1 of 1 Candidates"


def test_needs_me_says_why_a_rollout_waits_and_offers_the_action_that_fits() -> None:
    policy = RolloutPolicy(max_running=2)
    paused = RolloutStatus(state=RolloutPhase.PAUSED, policy=policy, paused_reason="3 Runs failed since the start")
    row = rollout_row(WaitingRollout("m", "Base image", paused))
    assert (row.label, row.reason, row.can_resume, row.can_promote) == (
        "Rollout paused",
        "3 Runs failed since the start",
        True,
        False,
    )
    gate = RolloutStatus(
        state=RolloutPhase.WAITING_FOR_PROMOTION,
        policy=policy,
        gate_waiting=True,
        wave=WaveView(index=0, count=2, size=3, completed=3),
        counts=RolloutCounts(queued=57, completed=3),
    )
    row = rollout_row(WaitingRollout("m", "Base image", gate))
    assert (row.label, row.reason, row.can_promote, row.href) == (
        "Waiting for Promote",
        "Wave 1 of 2 completed",
        True,
        "/migrations/m/rollout",
    )
    assert row.counts.startswith("57 queued")


def test_every_bulk_action_has_a_menu_label_and_a_verb_for_its_preview() -> None:
    assert set(ACTION_LABELS) == set(BulkAction) == set(VERBS)
