"""The rollout's and bulk operations' contact with the world: the read model, and the service's use cases.

A rollout starts Runs as an operator would, through the service (so claims, inputs and the Run's own rules
hold), on behalf of the operator who started it.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import ParamSpec, TypeVar

from temporalio import activity

from loom_backend.execution.messages import (
    BulkApplyInput,
    ObserveInput,
    PublishInput,
    RolloutActInput,
    RolloutActOutcome,
    RolloutStartInput,
    RolloutStartManyInput,
    RolloutStartManyOutcome,
    RolloutStartOutcome,
)
from loom_backend.ports import BoardQueries, BulkStore, OperatorActions, Registry
from loom_backend.rollout import BulkAction, BulkOutcomeKind, RolloutObservation, rollout_events

# A worker killed while it holds one of these activities is noticed when its heartbeats stop, so another worker takes
# the activity over within seconds rather than at its start-to-close timeout (a rollout stood still for 60 s).
HEARTBEAT_TIMEOUT = timedelta(seconds=10)
HEARTBEAT_EVERY_SECONDS = 2.0

P = ParamSpec("P")
R = TypeVar("R")


def _heartbeating(activity_fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Heartbeat every HEARTBEAT_EVERY_SECONDS while the activity runs; outside Temporal (unit tests), just run it."""

    @functools.wraps(activity_fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        if not activity.in_activity():
            return await activity_fn(*args, **kwargs)
        beats = asyncio.create_task(_beat())
        try:
            return await activity_fn(*args, **kwargs)
        finally:
            beats.cancel()

    return run


async def _beat() -> None:
    while True:
        activity.heartbeat()
        await asyncio.sleep(HEARTBEAT_EVERY_SECONDS)


class RolloutActivities:
    def __init__(self, actions: OperatorActions, registry: Registry, board: BoardQueries, bulk: BulkStore) -> None:
        self._actions = actions
        self._registry = registry
        self._board = board
        self._bulk = bulk

    @activity.defn(name="loom_rollout_observe")
    @_heartbeating
    async def observe(self, request: ObserveInput) -> RolloutObservation:
        """The rollout's open Candidates and the Migration's load, as the read model shows them now."""
        return await asyncio.to_thread(
            self._board.rollout_progress,
            request.migration_id,
            request.candidate_ids,
            request.group_key,
            request.since,
        )

    @activity.defn(name="loom_rollout_publish")
    @_heartbeating
    async def publish(self, request: PublishInput) -> None:
        """Write the rollout's status to the read model, where the board and GET .../rollout read it, and its
        actions to the event log, in one transaction; a retried attempt writes each event once (by key)."""
        events = rollout_events(request.migration_id, request.started_at, request.notes) if request.started_at else []
        await asyncio.to_thread(self._registry.set_rollout_status, request.migration_id, request.status, events)

    @activity.defn(name="loom_rollout_start")
    @_heartbeating
    async def start(self, request: RolloutStartInput) -> RolloutStartOutcome:
        """Start one Candidate's Run; a retried attempt finds the Candidate claimed and adopts its Run."""
        refusal = await self._actions.start_for(request.actor, request.migration_id, request.candidate_id)
        return RolloutStartOutcome(refusal=refusal)

    @activity.defn(name="loom_rollout_start_many")
    @_heartbeating
    async def start_many(self, request: RolloutStartManyInput) -> RolloutStartManyOutcome:
        """Start a round's Candidates in one activity; a retried attempt adopts the Runs an earlier one started."""
        refusals = await self._actions.start_many_for(request.actor, request.migration_id, request.candidate_ids)
        return RolloutStartManyOutcome(refusals=refusals)

    @activity.defn(name="loom_rollout_act")
    @_heartbeating
    async def act(self, request: RolloutActInput) -> RolloutActOutcome:
        """Retry or approve one Candidate's Step as an operator would (the service's bulk path); a Retry only while
        the Step still shows the failure it answers, so a repeated attempt is a no-op."""
        if request.action is BulkAction.RETRY:
            seen = await asyncio.to_thread(
                self._board.rollout_progress, request.migration_id, [request.candidate_id], None, request.since
            )
            member = seen.members.get(request.candidate_id)
            if member is None or member.failed_step != request.step_name or member.step_failures != request.failures:
                return RolloutActOutcome(refusal="the Step no longer shows this failure (retried already)")
        outcome, message = await self._actions.bulk_apply(
            request.actor,
            request.migration_id,
            request.candidate_id,
            request.action,
            request.step_name,
            request.comment,
        )
        return RolloutActOutcome(refusal=None if outcome is BulkOutcomeKind.DONE else message or outcome.value)

    @activity.defn(name="loom_bulk_apply")
    @_heartbeating
    async def bulk_apply(self, request: BulkApplyInput) -> None:
        """Apply the action to one Candidate and record its outcome; one already recorded is not applied again."""
        operation = await asyncio.to_thread(self._bulk.bulk_outcome, request.op_id, request.candidate_id)
        if operation is not BulkOutcomeKind.PENDING:
            return
        outcome, message = await self._actions.bulk_apply(
            request.actor,
            request.migration_id,
            request.candidate_id,
            request.action,
            request.step_name,
            request.comment,
        )
        await asyncio.to_thread(self._bulk.set_bulk_outcome, request.op_id, request.candidate_id, outcome, message)

    @activity.defn(name="loom_bulk_finish")
    @_heartbeating
    async def bulk_finish(self, op_id: str) -> None:
        await asyncio.to_thread(self._bulk.finish_bulk, op_id, activity.info().current_attempt_scheduled_time)
