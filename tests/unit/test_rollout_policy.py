"""The rollout's rules, as plain functions: who starts next, when a wave is done, the gates and the breaker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from loom_backend.domain import CandidateStatus, StepDefinition, parse_run_id
from loom_backend.rollout import (
    Gate,
    GroupCap,
    MemberProgress,
    RolloutObservation,
    RolloutPhase,
    RolloutPolicy,
    RolloutState,
    advance,
    auto_approvals,
    auto_retries,
    breaker_tripped,
    edit_refusal,
    find_cycle,
    next_starts,
    next_wake,
    pause,
    phase_refusal,
    plan_order,
    policy_refusal,
    promote,
    record_retry,
    record_start,
    resume,
    rollout_id,
    status_of,
    wave_ends,
    wave_of,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
RUNNING, COMPLETED, NOT_STARTED = CandidateStatus.RUNNING, CandidateStatus.COMPLETED, CandidateStatus.NOT_STARTED


def state(n: int = 10, **policy: object) -> RolloutState:
    policy.setdefault("max_running", 100)
    return RolloutState(
        migration_id="m",
        actor="ana",
        policy=RolloutPolicy.model_validate(policy),
        queue=[f"c{i}" for i in range(n)],
        started_at=NOW,
    )


def seen(members: dict[str, MemberProgress], running: int | None = None, **by_group: int) -> RolloutObservation:
    if running is None:
        running = sum(1 for m in members.values() if m.status == RUNNING)
    return RolloutObservation(members=members, running=running, running_by_group=by_group)


def start_all(s: RolloutState, ids: list[str]) -> None:
    for c in ids:
        record_start(s, c, None, NOW)


def test_a_rollout_id_can_never_be_a_run_id() -> None:
    with pytest.raises(ValueError):
        parse_run_id(rollout_id("checkout-migration"))
    assert ":" in rollout_id("x")


def test_max_running_leaves_room_only_for_the_cap_including_runs_started_by_hand() -> None:
    s = state(10, max_running=3)
    assert advance(s, seen({}, running=1), NOW) == ["c0", "c1"]
    start_all(s, ["c0", "c1"])
    assert next_starts(s, NOW) == []


def test_starts_per_hour_holds_starts_back_until_the_oldest_leaves_the_hour() -> None:
    s = state(10, starts_per_hour=2)
    start_all(s, advance(s, seen({}), NOW))
    assert s.started == ["c0", "c1"]
    assert next_starts(s, NOW + timedelta(minutes=30)) == []
    assert next_wake(s, NOW) == NOW + timedelta(hours=1)
    members = {c: MemberProgress(status=COMPLETED) for c in s.started}
    assert advance(s, seen(members), NOW + timedelta(minutes=61)) == ["c2", "c3"]


def test_the_group_cap_counts_open_runs_per_metadata_value() -> None:
    s = state(6, max_running_per_group={"key": "owner", "max": 2})
    s.groups = {"c0": "a", "c1": "a", "c2": "a", "c3": "b", "c4": "b", "c5": "b"}
    assert advance(s, seen({}, running=1, b=1), NOW) == ["c0", "c1", "c3"]


def test_a_candidate_starts_only_after_its_dependencies_completed() -> None:
    s = state(3, depends_on={"c0": ["c2"]})
    s.queue = plan_order(s.queue, {}, s.policy.depends_on)
    assert s.queue == ["c2", "c0", "c1"]
    starts = advance(s, seen({}), NOW)
    assert starts == ["c2", "c1"]
    start_all(s, starts)
    done = {"c2": MemberProgress(status=COMPLETED), "c1": MemberProgress(status=RUNNING)}
    assert advance(s, seen(done), NOW) == ["c0"]


def test_the_order_key_sorts_the_selection_and_candidates_without_it_go_last() -> None:
    order = plan_order(["a", "b", "c", "d"], {"a": "3", "b": "1", "d": "2"}, {})
    assert order == ["b", "d", "a", "c"]


def test_a_dependency_cycle_is_named() -> None:
    assert find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": ["b"], "b": []}) is None
    policy = RolloutPolicy(max_running=1, depends_on={"a": ["b"], "b": ["a"]})
    assert policy_refusal(policy, {"a", "b"}, set()) == "dependsOn has a cycle: a -> b -> a"


def test_a_policy_naming_unknown_keys_or_candidates_is_refused() -> None:
    assert "order" in (policy_refusal(RolloutPolicy(max_running=1, order="tier"), {"a"}, {"owner"}) or "")
    grouped = RolloutPolicy(max_running=1, max_running_per_group={"key": "team", "max": 1})
    assert "team" in (policy_refusal(grouped, {"a"}, {"owner"}) or "")
    assert "zz" in (policy_refusal(RolloutPolicy(max_running=1, depends_on={"a": ["zz"]}), {"a"}, set()) or "")
    assert policy_refusal(RolloutPolicy(max_running=1, order="owner"), {"a"}, {"owner"}) is None


def test_a_bad_policy_does_not_validate() -> None:
    for bad in ({"maxRunning": 0}, {"maxRunning": 1, "waves": ["0%"]}, {"maxRunning": 1, "waves": ["ten"]}):
        with pytest.raises(ValidationError):
            RolloutPolicy.model_validate(bad)


def test_waves_are_cumulative_targets_and_the_last_takes_the_rest() -> None:
    assert wave_ends([3, "100%"], 60) == [3, 60]
    assert wave_ends([3, "10%", "50%", "100%"], 60) == [3, 6, 30, 60]
    assert wave_ends([5], 20) == [5, 20]
    assert wave_ends([], 7) == [7]
    assert wave_ends([10, 5, "100%"], 8) == [8]


def test_a_manual_gate_waits_for_promote_and_nothing_of_the_next_wave_starts_before() -> None:
    s = state(6, waves=[2, "100%"], gate="manual")
    first = advance(s, seen({}), NOW)
    assert first == ["c0", "c1"]
    start_all(s, first)
    assert advance(s, seen({"c0": MemberProgress(status=COMPLETED), "c1": MemberProgress(status=RUNNING)}), NOW) == []
    done = seen({c: MemberProgress(status=COMPLETED) for c in first})
    assert advance(s, done, NOW) == []
    assert s.phase is RolloutPhase.WAITING_FOR_PROMOTION
    assert status_of(s).gate_waiting
    promote(s)
    assert advance(s, done, NOW) == ["c2", "c3", "c4", "c5"]


def test_an_auto_gate_opens_after_the_soak_when_the_wave_had_no_failure() -> None:
    s = state(4, waves=[2, "100%"], gate=Gate.AUTO, soak_minutes=10)
    start_all(s, advance(s, seen({}), NOW))
    done = seen({c: MemberProgress(status=COMPLETED) for c in s.started})
    assert advance(s, done, NOW) == []
    assert next_wake(s, NOW) == NOW + timedelta(minutes=10)
    assert advance(s, done, NOW + timedelta(minutes=9)) == []
    assert advance(s, done, NOW + timedelta(minutes=10)) == ["c2", "c3"]


def test_an_auto_gate_after_a_wave_with_a_failed_step_waits_for_an_operator() -> None:
    s = state(4, waves=[2, "100%"], gate=Gate.AUTO, soak_minutes=0)
    start_all(s, advance(s, seen({}), NOW))
    done = seen({"c0": MemberProgress(status=COMPLETED, failures=1), "c1": MemberProgress(status=COMPLETED)})
    assert advance(s, done, NOW + timedelta(hours=1)) == []
    assert s.phase is RolloutPhase.WAITING_FOR_PROMOTION and status_of(s).gate_waiting


def test_a_cancelled_or_refused_candidate_finishes_its_wave() -> None:
    s = state(3, waves=[2, "100%"])
    start_all(s, advance(s, seen({}), NOW)[:1])
    record_start(s, "c1", "Missing required inputs: tag", NOW)
    advance(s, seen({"c0": MemberProgress(status=NOT_STARTED)}), NOW)
    assert s.phase is RolloutPhase.WAITING_FOR_PROMOTION
    counts = status_of(s).counts
    assert (counts.cancelled, counts.refused, counts.queued) == (1, 1, 1)


def test_the_breaker_pauses_after_n_failed_runs_and_resume_counts_only_new_failures() -> None:
    s = state(10, pause_after_failures=2)
    start_all(s, advance(s, seen({}), NOW))
    one = {"c0": MemberProgress(status=RUNNING, failures=1, failing=True)}
    assert advance(s, seen(one), NOW) == []
    assert s.phase is RolloutPhase.RUNNING
    two = {**one, "c1": MemberProgress(status=RUNNING, failures=1, failing=True)}
    advance(s, seen(two), NOW)
    assert s.phase is RolloutPhase.PAUSED and "breaker" in (s.paused_reason or "")
    assert next_starts(s, NOW) == []
    resume(s)
    assert not breaker_tripped(s)
    three = {**two, "c2": MemberProgress(status=RUNNING, failures=1)}
    advance(s, seen(three), NOW)
    assert s.phase is RolloutPhase.RUNNING


def test_pause_stops_new_starts_and_says_who() -> None:
    s = state(3)
    pause(s, "ana")
    assert advance(s, seen({}), NOW) == [] and s.paused_reason == "paused by ana"
    assert phase_refusal(s, "promote") is not None and phase_refusal(s, "resume") is None
    resume(s)
    assert advance(s, seen({}), NOW) == ["c0", "c1", "c2"]


def test_the_rollout_completes_when_the_last_wave_is_done() -> None:
    s = state(2)
    start_all(s, advance(s, seen({}), NOW))
    advance(s, seen({c: MemberProgress(status=COMPLETED) for c in s.started}), NOW)
    assert s.phase is RolloutPhase.COMPLETED
    assert status_of(s).counts.completed == 2


def test_order_dependencies_and_the_group_key_are_fixed_while_running_caps_are_not() -> None:
    current = RolloutPolicy(max_running=1, order="tier", max_running_per_group={"key": "owner", "max": 1})
    assert edit_refusal(current, current.model_copy(update={"max_running": 9})) is None
    assert edit_refusal(current, current.model_copy(update={"order": None})) is not None
    other_key = current.model_copy(update={"max_running_per_group": GroupCap(key="team", max=1)})
    assert edit_refusal(current, other_key) is not None


# -- autoRetry and autoApprove ------------------------------------------------------------------------

STEPS = [
    StepDefinition(name="bump", migrator_app="m"),
    StepDefinition(name="review", migrator_app="m", type="manual-review"),
]


def failed(step: str = "bump", times: int = 1, failures: int | None = None, **extra: object) -> MemberProgress:
    return MemberProgress.model_validate(
        {
            "status": RUNNING,
            "failures": times if failures is None else failures,
            "failing": True,
            "failed_step": step,
            "failed_at": NOW,
            "step_failures": times,
            **extra,
        }
    )


def test_auto_retry_retries_a_new_failure_once_and_never_the_same_failure_twice() -> None:
    s = state(2, auto_retry={"attempts": 2})
    start_all(s, advance(s, seen({}), NOW))
    advance(s, seen({"c0": failed(times=1)}), NOW)
    assert auto_retries(s, NOW) == [("c0", "bump", 1)]
    record_retry(s, "c0", "bump", 1)
    advance(s, seen({"c0": failed(times=1)}), NOW)
    assert auto_retries(s, NOW) == [], "the same failure, seen again, is not retried again"
    advance(s, seen({"c0": failed(times=2)}), NOW)
    assert auto_retries(s, NOW) == [("c0", "bump", 2)]
    record_retry(s, "c0", "bump", 2)
    advance(s, seen({"c0": failed(times=3)}), NOW)
    assert auto_retries(s, NOW) == [], "attempts are used up"


def test_a_failure_the_rollout_retries_counts_for_the_breaker_only_once_its_attempts_are_used() -> None:
    s = state(3, auto_retry={"attempts": 1}, pause_after_failures=1)
    start_all(s, advance(s, seen({}), NOW))
    advance(s, seen({"c0": failed(times=1)}), NOW)
    assert s.phase is RolloutPhase.RUNNING, "a failure waiting for its automatic retry does not trip the breaker"
    record_retry(s, "c0", "bump", 1)
    advance(s, seen({"c0": MemberProgress(status=RUNNING, failures=1)}), NOW)
    assert s.phase is RolloutPhase.RUNNING, "nor one the rollout retried"
    advance(s, seen({"c0": failed(times=2)}), NOW)
    assert s.phase is RolloutPhase.PAUSED and "c0" in (s.paused_reason or "")


def test_auto_retry_waits_after_minutes_and_the_rollout_wakes_for_it() -> None:
    s = state(1, auto_retry={"attempts": 1, "after_minutes": 5})
    start_all(s, advance(s, seen({}), NOW))
    advance(s, seen({"c0": failed()}), NOW)
    assert auto_retries(s, NOW) == []
    assert next_wake(s, NOW) == NOW + timedelta(minutes=5)
    assert auto_retries(s, NOW + timedelta(minutes=5)) == [("c0", "bump", 1)]


def test_auto_retry_leaves_a_step_an_operator_rejected_and_acts_only_while_running() -> None:
    s = state(2, auto_retry={"attempts": 3})
    start_all(s, advance(s, seen({}), NOW))
    advance(s, seen({"c0": failed("review", rejected=["review"]), "c1": failed()}), NOW)
    assert auto_retries(s, NOW) == [("c1", "bump", 1)]
    pause(s, "ana")
    assert auto_retries(s, NOW) == []


def test_auto_approve_approves_from_its_wave_on_but_not_the_canary_wave() -> None:
    s = state(4, waves=[1, "100%"], auto_approve={"step": "review"})
    start_all(s, advance(s, seen({}), NOW))
    review = MemberProgress(status=RUNNING, review_step="review")
    advance(s, seen({"c0": review}), NOW)
    assert auto_approvals(s) == [], "wave 1 is reviewed by hand"
    advance(s, seen({"c0": MemberProgress(status=COMPLETED)}), NOW)
    promote(s)
    start_all(s, advance(s, seen({}), NOW))
    rejected = MemberProgress(status=RUNNING, review_step="review", rejected=["review"])
    advance(s, seen({"c1": review, "c2": rejected, "c3": MemberProgress(status=RUNNING)}), NOW)
    assert [wave_of(s, c) for c in s.queue] == [1, 2, 2, 2]
    assert auto_approvals(s) == ["c1"], "not a review an operator rejected, nor a Run not awaiting review"


def test_auto_approve_names_a_known_manual_review_step() -> None:
    unknown = RolloutPolicy(max_running=1, auto_approve={"step": "sign-off"})
    assert (policy_refusal(unknown, {"a"}, set(), STEPS) or "").startswith("autoApprove.step: ")
    not_review = RolloutPolicy(max_running=1, auto_approve={"step": "bump"})
    assert "not a manual-review" in (policy_refusal(not_review, {"a"}, set(), STEPS) or "")
    assert policy_refusal(RolloutPolicy(max_running=1, auto_approve={"step": "review"}), {"a"}, set(), STEPS) is None


@pytest.mark.parametrize(
    "policy",
    [
        {"autoRetry": {"attempts": 0}},
        {"autoRetry": {"attempts": 1, "afterMinutes": -1}},
        {"autoApprove": {"step": "review", "fromWave": 0}},
        {"autoApprove": {"step": ""}},
    ],
)
def test_a_bad_auto_retry_or_auto_approve_is_refused(policy: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RolloutPolicy.model_validate({"maxRunning": 1, **policy})
