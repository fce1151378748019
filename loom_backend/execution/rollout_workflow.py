"""One Temporal workflow per Migration's rollout, and one per bulk operation.

The rollout owns its policy and state; it looks at the read model through an activity every few seconds (or at
once when an operator acts, or a Run's activity signals that a Run ended or a Step failed), lets the domain's rules
(loom_backend.rollout) decide, and starts Runs through the service. Its whole state lives in the workflow, carried
across continue-as-new, so caps, waves, gates and the breaker survive a restart of any process. Operator actions are
updates whose validators refuse what does not fit.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from loom_backend.domain import EventType
    from loom_backend.execution.messages import (
        BULK_WORKFLOW_NAME,
        ROLLOUT_ACTION_UPDATE,
        ROLLOUT_LOOK_SIGNAL,
        ROLLOUT_NOT_IN_STATE,
        ROLLOUT_POLICY_UPDATE,
        ROLLOUT_STATE_QUERY,
        ROLLOUT_WORKFLOW_NAME,
        BulkApplyInput,
        BulkInput,
        ObserveInput,
        PublishInput,
        RolloutActInput,
        RolloutActionInput,
        RolloutInput,
        RolloutPolicyInput,
        RolloutStartInput,
        RolloutStartManyInput,
    )
    from loom_backend.execution.rollout_activities import HEARTBEAT_TIMEOUT, RolloutActivities
    from loom_backend.rollout import (
        AUTO,
        BulkAction,
        RolloutPhase,
        RolloutState,
        RolloutStatus,
        advance,
        auto_approvals,
        auto_retries,
        edit_refusal,
        next_wake,
        note,
        observed_ids,
        pause,
        phase_refusal,
        promote,
        record_retry,
        record_start,
        resume,
        status_of,
        wave_of,
    )

# The read model or the service being away must not end a rollout: keep trying, slowly.
PATIENT = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=30))
HISTORY_LIMIT = 5_000
# Rollouts begun before their actions went to the event log replay as they ran: no notes written for them.
ROLLOUT_EVENTS_PATCH = "rollout-events"
ROLLOUT_LEAN_PATCH = "rollout-start-many"
# Starts per activity: a round of a large maxRunning takes a few, each well within the 60 s a single Start had (as
# long as a batch lost with a killed worker holds the rollout up).
START_BATCH = 100


class RolloutNotInStateError(ApplicationError):
    def __init__(self, message: str) -> None:
        super().__init__(message, type=ROLLOUT_NOT_IN_STATE, non_retryable=True)


@workflow.defn(name=ROLLOUT_WORKFLOW_NAME)
class RolloutWorkflow:
    @workflow.init
    def __init__(self, input: RolloutInput) -> None:
        self._state: RolloutState = input.state
        self._poll = input.poll_seconds
        self._poked = False
        self._look_again = False  # a Run ended or a Step failed since the last look began
        self._changes = 0  # operator actions taken
        self._published = 0  # of which the read model shows the effect
        self._last: RolloutStatus | None = None

    @workflow.run
    async def run(self, input: RolloutInput) -> RolloutState:
        state = self._state
        if state.note_seq == 0:
            note(state, EventType.ROLLOUT_STARTED, state.actor, workflow.now(), size=str(len(state.queue)))
        # One activity per round's Starts, and the status written while the rollout waits or looks again; rollouts
        # begun before replay as they ran (an activity per Start, the status written before the wait).
        lean = workflow.patched(ROLLOUT_LEAN_PATCH)
        publishing: asyncio.Task[None] | None = None
        while not state.phase.over:
            cap = state.policy.max_running_per_group
            self._look_again = False  # cleared before the look: a signal during it may come after its read
            looking = workflow.execute_activity_method(
                RolloutActivities.observe,
                ObserveInput(
                    migration_id=state.migration_id,
                    candidate_ids=observed_ids(state),
                    group_key=cap.key if cap else None,
                    since=state.started_at,
                ),
                start_to_close_timeout=timedelta(seconds=60),
                retry_policy=PATIENT,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
            )
            if publishing is not None:
                observation, _ = await asyncio.gather(looking, publishing)
                publishing = None
            else:
                observation = await looking
            self._poked = False
            starts = advance(state, observation, workflow.now())
            # Starts, automatic retries and approvals at once: each is a round trip, and every one delays a Run.
            outcomes, _ = await asyncio.gather(self._start_all(starts, lean), self._act_by_policy())
            for candidate_id, refusal in zip(starts, outcomes, strict=True):
                record_start(state, candidate_id, refusal, workflow.now())
            if lean and not state.phase.over:
                publishing = asyncio.create_task(self._publish())
            else:
                await self._publish()
            if state.phase.over:
                break
            if workflow.info().is_continue_as_new_suggested() or workflow.info().get_current_history_length() > (
                HISTORY_LIMIT
            ):
                if publishing is not None:
                    await publishing  # its notes leave the state once written
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(RolloutInput(state=state, poll_seconds=self._poll))
            timeout = self._poll
            wake = next_wake(state, workflow.now())
            if wake is not None:
                timeout = max(0.01, min(timeout, (wake - workflow.now()).total_seconds()))
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    lambda: self._poked or self._look_again, timeout=timedelta(seconds=timeout)
                )
        if publishing is not None:  # stopped while it waited
            await publishing
        await self._publish()
        await workflow.wait_condition(workflow.all_handlers_finished)
        return state

    async def _publish(self) -> None:
        """Write the status when it changed; an operator's action answers once its effect is in the read model."""
        changes = self._changes
        state = self._state
        status = status_of(state)
        notes = list(state.notes) if workflow.patched(ROLLOUT_EVENTS_PATCH) else []
        if status != self._last or notes:
            await workflow.execute_activity_method(
                RolloutActivities.publish,
                PublishInput(migration_id=state.migration_id, status=status, notes=notes, started_at=state.started_at),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=PATIENT,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
            )
            self._last = status
        state.notes = [n for n in state.notes if n not in notes]
        self._published = changes

    async def _changed(self) -> None:
        self._changes += 1
        self._poked = True
        target = self._changes
        await workflow.wait_condition(lambda: self._published >= target)

    async def _act_by_policy(self) -> None:
        """autoRetry and autoApprove: Retry the failed Steps due and approve the reviews of later waves, all at once.
        Each retry's attempt is kept in the state before it is made, so a failure is never retried twice."""
        state = self._state
        now = workflow.now()
        retries, approvals, approve = auto_retries(state, now), auto_approvals(state), state.policy.auto_approve
        if not retries and not approvals:
            return
        by = state.policy_by or state.actor
        for candidate_id, step_name, attempt in retries:
            record_retry(state, candidate_id, step_name, attempt)
        step = approve.step if approve else ""
        comment = f"approved by the rollout's autoApprove (policy set by {by})"
        refusals = await asyncio.gather(
            *(self._act(c, s, BulkAction.RETRY, failures=state.seen.members[c].step_failures) for c, s, _ in retries),
            *(self._act(c, step, BulkAction.APPROVE, comment=comment) for c in approvals),
        )
        for (candidate_id, step_name, attempt), refusal in zip(retries, refusals[: len(retries)], strict=True):
            state.seen.members[candidate_id].failing = False
            skipped = {"skipped": refusal} if refusal else {}
            metadata = {"candidate": candidate_id, "step": step_name, "attempt": str(attempt), **skipped}
            note(state, EventType.ROLLOUT_STEP_RETRIED, AUTO, now, **metadata, policySetBy=by)
        for candidate_id, refusal in zip(approvals, refusals[len(retries) :], strict=True):
            state.seen.members[candidate_id].review_step = None
            if refusal is None:
                metadata = {"candidate": candidate_id, "step": step, "wave": str(wave_of(state, candidate_id))}
                note(state, EventType.ROLLOUT_STEP_APPROVED, AUTO, now, **metadata, policySetBy=by)

    async def _act(
        self, candidate_id: str, step_name: str, action: BulkAction, failures: int = 0, comment: str | None = None
    ) -> str | None:
        outcome = await workflow.execute_activity_method(
            RolloutActivities.act,
            RolloutActInput(
                migration_id=self._state.migration_id,
                candidate_id=candidate_id,
                step_name=step_name,
                action=action,
                actor=AUTO,
                since=self._state.started_at,
                failures=failures,
                comment=comment,
            ),
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=PATIENT,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
        )
        return outcome.refusal

    def _start_all(self, candidate_ids: list[str], lean: bool) -> Awaitable[list[str | None]]:
        """Each Candidate's refusal, in order. Before ROLLOUT_LEAN_PATCH an activity per Start, scheduled at once
        (ahead of the automatic retries', as they were)."""
        if not lean:
            return asyncio.gather(*(self._start(c) for c in candidate_ids))
        return self._start_many(candidate_ids)

    async def _start_many(self, candidate_ids: list[str]) -> list[str | None]:
        """A few activities of up to START_BATCH Starts each: a round trip and three history events per batch, not
        per Run."""
        batches = [candidate_ids[i : i + START_BATCH] for i in range(0, len(candidate_ids), START_BATCH)]
        outcomes = await asyncio.gather(
            *(
                workflow.execute_activity_method(
                    RolloutActivities.start_many,
                    RolloutStartManyInput(
                        migration_id=self._state.migration_id, candidate_ids=batch, actor=self._state.actor
                    ),
                    start_to_close_timeout=timedelta(seconds=60),
                    retry_policy=PATIENT,
                    heartbeat_timeout=HEARTBEAT_TIMEOUT,
                )
                for batch in batches
            )
        )
        return [refusal for outcome in outcomes for refusal in outcome.refusals]

    async def _start(self, candidate_id: str) -> str | None:
        outcome = await workflow.execute_activity_method(
            RolloutActivities.start,
            RolloutStartInput(
                migration_id=self._state.migration_id, candidate_id=candidate_id, actor=self._state.actor
            ),
            start_to_close_timeout=timedelta(seconds=60),
            retry_policy=PATIENT,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
        )
        return outcome.refusal

    @workflow.update(name=ROLLOUT_ACTION_UPDATE)
    async def action(self, request: RolloutActionInput) -> None:
        state = self._state
        if request.action == "pause":
            pause(state, request.actor)
            note(state, EventType.ROLLOUT_PAUSED, request.actor, workflow.now(), reason=state.paused_reason or "")
        elif request.action == "resume":
            resume(state)
            note(state, EventType.ROLLOUT_RESUMED, request.actor, workflow.now())
        elif request.action == "promote":
            promote(state)
            note(state, EventType.ROLLOUT_PROMOTED, request.actor, workflow.now(), wave=str(state.wave + 1))
        else:
            state.phase = RolloutPhase.STOPPED
            state.paused_reason = f"stopped by {request.actor}"
            note(state, EventType.ROLLOUT_STOPPED, request.actor, workflow.now())
        await self._changed()

    @action.validator
    def _validate_action(self, request: RolloutActionInput) -> None:
        if request.action not in ("pause", "resume", "promote", "stop"):
            raise RolloutNotInStateError(f"unknown rollout action {request.action!r}")
        refusal = phase_refusal(self._state, request.action)
        if refusal is not None:
            raise RolloutNotInStateError(refusal)

    @workflow.update(name=ROLLOUT_POLICY_UPDATE)
    async def set_policy(self, request: RolloutPolicyInput) -> None:
        self._state.policy = request.policy
        self._state.policy_by = request.actor
        note(self._state, EventType.ROLLOUT_POLICY_EDITED, request.actor, workflow.now())
        await self._changed()

    @set_policy.validator
    def _validate_policy(self, request: RolloutPolicyInput) -> None:
        refusal = phase_refusal(self._state, "edit") or edit_refusal(self._state.policy, request.policy)
        if refusal is not None:
            raise RolloutNotInStateError(refusal)

    @workflow.signal(name=ROLLOUT_LOOK_SIGNAL)
    def look(self) -> None:
        """A Run of the Migration ended or had a Step fail: a slot may be free, so look now, not at the next poll."""
        self._look_again = True

    @workflow.query(name=ROLLOUT_STATE_QUERY)
    def current(self) -> RolloutState:
        return self._state


@workflow.defn(name=BULK_WORKFLOW_NAME)
class BulkWorkflow:
    """Applies one action to each Candidate of a selection, a few at a time; each outcome lands in the read model."""

    @workflow.run
    async def run(self, input: BulkInput) -> None:
        ids = list(input.candidate_ids)
        for begin in range(0, len(ids), input.parallel):
            await asyncio.gather(
                *(
                    workflow.execute_activity_method(
                        RolloutActivities.bulk_apply,
                        BulkApplyInput(
                            op_id=input.op_id,
                            migration_id=input.migration_id,
                            action=input.action,
                            actor=input.actor,
                            candidate_id=c,
                            step_name=input.step_name,
                            comment=input.comment,
                        ),
                        start_to_close_timeout=timedelta(seconds=60),
                        retry_policy=PATIENT,
                        heartbeat_timeout=HEARTBEAT_TIMEOUT,
                    )
                    for c in ids[begin : begin + input.parallel]
                )
            )
            if workflow.info().get_current_history_length() > HISTORY_LIMIT:
                workflow.continue_as_new(input.model_copy(update={"candidate_ids": ids[begin + input.parallel :]}))
        await workflow.execute_activity_method(
            RolloutActivities.bulk_finish,
            input.op_id,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=PATIENT,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
        )
