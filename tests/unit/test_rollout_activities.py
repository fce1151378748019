"""The rollout's automatic Retry as an activity, against small fakes: a repeated attempt never retries a later
failure (activities are at-least-once), and a Retry goes through the operator's path with the rollout as actor."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from loom_backend.domain import CandidateStatus
from loom_backend.execution.messages import RolloutActInput
from loom_backend.execution.rollout_activities import RolloutActivities
from loom_backend.rollout import BulkAction, BulkOutcomeKind, MemberProgress, RolloutObservation

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Board:
    """The read model as the activity asks it: one Candidate's progress."""

    member: MemberProgress

    def rollout_progress(self, migration_id: str, ids: list[str], key: str | None, since: Any) -> RolloutObservation:
        return RolloutObservation(members={c: self.member for c in ids})


@dataclass
class Actions:
    calls: list[tuple[str, str, BulkAction, str | None]] = field(default_factory=list)

    async def bulk_apply(self, actor: str, migration_id: str, candidate_id: str, action: BulkAction, step, comment):
        self.calls.append((actor, candidate_id, action, step))
        return BulkOutcomeKind.DONE, None


def retry(failures: int) -> RolloutActInput:
    return RolloutActInput(
        migration_id="m",
        candidate_id="c0",
        step_name="bump",
        action=BulkAction.RETRY,
        actor="rollout",
        since=NOW,
        failures=failures,
    )


def failed(times: int) -> MemberProgress:
    return MemberProgress(status=CandidateStatus.RUNNING, failing=True, failed_step="bump", step_failures=times)


async def test_an_automatic_retry_retries_the_failure_it_was_decided_for() -> None:
    actions = Actions()
    activities = RolloutActivities(actions, None, Board(failed(1)), None)  # type: ignore[arg-type]
    assert (await activities.act(retry(failures=1))).refusal is None
    assert actions.calls == [("rollout", "c0", BulkAction.RETRY, "bump")]


async def test_a_repeated_attempt_after_the_step_failed_again_does_not_retry_the_new_failure() -> None:
    actions = Actions()
    activities = RolloutActivities(actions, None, Board(failed(2)), None)  # type: ignore[arg-type]
    outcome = await activities.act(retry(failures=1))
    assert outcome.refusal is not None and "retried already" in outcome.refusal
    assert actions.calls == []
