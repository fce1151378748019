"""One Temporal workflow per Run: Steps in order, each dispatched to its Migrator and awaited.

Migrator callbacks and operator actions arrive as updates with validators, so an action that
does not fit the Step's status is refused synchronously (the engine turns that into a 409)
and never enters the Run's history. Every change reaches the read model in the order the Run
made it, with an idempotency key per event: carried by the next Step's dispatch activity (so a
Step costs one activity), or through the persist local activity when the Run waits instead.
A Migrator's callback is answered once it is in the Run's history; an operator's action once
its writes are in the read model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import TimeoutError as ActivityTimeoutError
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from loom_backend.domain import (
        CandidateStatus,
        DispatchRetry,
        DispatchStepRequest,
        EventType,
        MigrationManifest,
        RunChange,
        RunPosition,
        StepAction,
        StepDefinition,
        StepEvent,
        StepResult,
        StepStatus,
        StringMap,
        action_refusal,
        callback_refusal,
        merged_metadata,
        steps_for,
    )
    from loom_backend.execution.activities import RunActivities
    from loom_backend.execution.messages import (
        CANCEL_REQUESTED_SIGNAL,
        DESCRIBE_QUERY,
        DISPATCH_WRITE_SECONDS,
        MARK_MERGED_UPDATE,
        MIGRATOR_REJECTED,
        READ_MODEL_UNAVAILABLE,
        RETRY_STEP_UPDATE,
        REVIEW_STEP_UPDATE,
        STEP_EVENT_UPDATE,
        STEP_NOT_IN_STATE,
        UPDATE_INPUTS_UPDATE,
        WORKFLOW_NAME,
        CancelRequest,
        DispatchInput,
        MarkMergedInput,
        PersistBatch,
        RetryStepInput,
        ReviewStepInput,
        RunInput,
        RunView,
        StepEventInput,
        StepView,
        UpdateInputsInput,
    )

# A repeated `open` or `awaiting_review` with new metadata (a PR's checks, review, mergeable) updates the Step;
# Runs recorded before this took such a repeat as a no-op, and replay keeps that.
METADATA_UPDATES_PATCH = "step-metadata-updates"
PERSIST_TIMEOUT = timedelta(seconds=30)
# The read model being down must not fail a Run: keep trying, slowly.
PERSIST_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10))


@dataclass
class _Step:
    definition: StepDefinition
    status: StepStatus | None = None
    metadata: StringMap = field(default_factory=dict)
    pr_url: str | None = None
    started_at: datetime | None = None
    updated_at: datetime | None = None
    completed_at: datetime | None = None
    dispatches: int = 0

    @property
    def name(self) -> str:
        return self.definition.name


@dataclass
class _InFlight:
    """A dispatch the Migrator has not taken yet, and the writes it carries to the read model."""

    step: _Step
    dispatches: int
    writes: list[RunChange]
    written: bool = False  # an attempt got past the writes: they are in the read model
    sending: asyncio.Future[str | None] = field(init=False)

    def needed(self) -> bool:
        """The Step still waits on this dispatch: no callback, Retry or Cancel moved it on."""
        return self.step.status is StepStatus.IN_PROGRESS and self.step.dispatches == self.dispatches

    def unconfirmed(self) -> bool:
        """Its writes may be missing from the read model: no attempt got past them and the Migrator never called back."""
        sending = self.sending
        succeeded = sending.done() and not sending.cancelled() and not sending.exception() and sending.result() is None
        return not (succeeded or self.written) and self.needed()


def _failure(exc: ActivityError) -> tuple[str | None, str]:
    """Whose fault a failed dispatch attempt was (the activity's error type), and what happened."""
    cause = exc.cause
    if isinstance(cause, ApplicationError):
        return cause.type, cause.message
    if isinstance(cause, ActivityTimeoutError):
        return None, "the dispatch got no answer in time (the worker may have stopped)"
    return None, str(cause or exc)


def _duration_text(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class StepNotInStateError(ApplicationError):
    """Raised by validators; the caller sees its message, the Run's history never sees the update."""

    def __init__(self, message: str) -> None:
        super().__init__(message, type=STEP_NOT_IN_STATE, non_retryable=True)


@workflow.defn(name=WORKFLOW_NAME)
class RunWorkflow:
    @workflow.init
    def __init__(self, input: RunInput) -> None:
        self._manifest: MigrationManifest = input.manifest
        self._actor = input.actor
        self._policy = input.dispatch
        self._inputs: StringMap = dict(input.manifest.inputs)
        steps = steps_for(input.manifest.candidate, input.manifest.steps)
        self._steps: dict[str, _Step] = {s.name: _Step(s) for s in steps}
        self._order = [s.name for s in steps]
        self._current: str | None = None
        self._cancel_actor: str | None = None
        self._closing = False
        self._event_seq = 0
        self._queue: list[RunChange] = []
        self._queued = 0
        self._flushed = 0
        self._awaited = 0
        self._in_flight: list[_InFlight] = []

    # --- the Run ---------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: RunInput) -> str:
        try:
            self._enqueue(  # written with the first dispatch
                RunChange(candidate_status=CandidateStatus.RUNNING),
                *self._event(EventType.RUN_STARTED, actor=self._actor, metadata=self._inputs),
            )
            for name in self._order:
                await self._run_step(self._steps[name])
            self._current = None
            self._closing = True
            # Let the last dispatch answer first: completing the Run under it would fail the workflow task.
            await self._wait_until(lambda: all(d.sending.done() for d in self._in_flight))
            await self._record(
                RunChange(candidate_status=CandidateStatus.COMPLETED),
                *self._event(EventType.RUN_COMPLETED),
            )
        except asyncio.CancelledError:
            # The cancellation was delivered to this task once; the cleanup below is new work the
            # Run still owes the read model, so the Candidate goes back to not_started for sure.
            self._current = None
            self._closing = True
            # A dispatch still in flight may write after the cleanup: cancel it and wait until it is over.
            for in_flight in self._in_flight:
                in_flight.sending.cancel()
            await workflow.wait_condition(lambda: all(d.sending.done() for d in self._in_flight))
            for in_flight in reversed(self._in_flight):
                if in_flight.unconfirmed():
                    self._queue[:0] = in_flight.writes  # it may not have written them: again, first (idempotent)
            await self._record(
                *self._event(EventType.RUN_CANCELLED, actor=self._cancel_actor),
                RunChange(candidate_status=CandidateStatus.NOT_STARTED),
            )
            raise
        await self._wait_until(workflow.all_handlers_finished)
        return "completed"

    async def _run_step(self, step: _Step) -> None:
        self._current = step.name
        while True:
            await self._dispatch(step)
            await self._wait_until(lambda: step.status in (StepStatus.FAILED, StepStatus.MERGED, StepStatus.COMPLETED))
            if step.status is not StepStatus.FAILED:
                return
            # Only a Retry (or Cancel) moves a failed Step on.
            await self._wait_until(lambda: step.status is not StepStatus.FAILED)

    async def _dispatch(self, step: _Step) -> None:
        if self._flushed < self._awaited:
            await self._record()  # an operator waits on these writes: they go now, not after the Migrator answers
        now = workflow.now()
        step.status = StepStatus.IN_PROGRESS
        step.metadata = {}
        step.pr_url = None
        step.started_at = step.updated_at = now
        step.completed_at = None
        step.dispatches += 1
        self._enqueue(
            self._result(step),
            *self._event(
                EventType.STEP_DISPATCHED, step, status=step.status, metadata={"attempt": str(step.dispatches)}
            ),
        )
        # Everything queued goes with the dispatch activity; later writes wait until it has written these.
        writes, self._queue = self._queue, []
        self._flushed += len(writes)
        request = DispatchStepRequest(
            migration_id=self._manifest.migration_id,
            step_name=step.name,
            candidate=merged_metadata(self._manifest.candidate, self._inputs),
            config=step.definition.config,
            callback_id=self._manifest.run_id,
            event_name=f"step-completed:{step.name}:{self._manifest.candidate.id}",
            migrator_app=step.definition.migrator_app,
            migrator_url=self._manifest.migrator_url,
            type=step.definition.type,
            dispatch_id=f"{workflow.info().run_id}:{step.name}:{step.dispatches}",
        )
        in_flight = _InFlight(step, step.dispatches, writes)
        in_flight.sending = asyncio.ensure_future(self._send(request, in_flight))
        self._in_flight.append(in_flight)
        sending = in_flight.sending
        # A callback can come before the dispatch's own answer (or while it is still retrying):
        # whichever comes first moves the Step on.
        await self._wait_until(lambda: sending.done() or step.status is not StepStatus.IN_PROGRESS)
        if not sending.done():
            return
        self._in_flight.remove(in_flight)
        error = sending.result()
        if error is not None and step.status is StepStatus.IN_PROGRESS and step.dispatches == in_flight.dispatches:
            # The activity may have failed before it wrote: its writes go again (idempotent), then the failure.
            self._enqueue(*writes, *self._finish(step, StepStatus.FAILED, {"error": error}))

    async def _send(self, request: DispatchStepRequest, in_flight: _InFlight) -> str | None:
        """Dispatch until the Migrator takes the Step: None then, or the error that fails the Step.

        Attempts back off exponentially (capped) for the policy's window, so a Migrator redeploy or an
        outage of hours needs no operator, and the read model shows each retry. Loom's own database
        being unwritable is waited out without counting against the Migrator. A callback ends the
        retries: the Migrator has the Step.
        """
        policy = self._policy
        started = workflow.now()
        attempt = failures = 0
        while True:
            attempt += 1
            try:
                await workflow.execute_activity_method(
                    RunActivities.dispatch_step,
                    DispatchInput(
                        request=request,
                        writes=self._batch([] if in_flight.written else in_flight.writes),
                        attempt=attempt,
                    ),
                    start_to_close_timeout=timedelta(seconds=policy.timeout_seconds + DISPATCH_WRITE_SECONDS + 1),
                    retry_policy=RetryPolicy(maximum_attempts=1),  # the Run retries: it knows whose fault it was
                    # On Cancel the cleanup waits for an attempt in flight, so its writes cannot land after it.
                    cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
                )
            except ActivityError as exc:
                kind, message = _failure(exc)
                if kind == MIGRATOR_REJECTED:
                    return message
                if kind == READ_MODEL_UNAVAILABLE:
                    workflow.logger.warning("Run %s waits for Loom's database: %s", self._manifest.run_id, message)
                    delay = policy.backoff(attempt)
                else:
                    in_flight.written = in_flight.written or kind is not None  # the activity got past its writes
                    failures += 1
                    waited = (workflow.now() - started).total_seconds()
                    delay = policy.backoff(failures)
                    if waited + delay > policy.retry_window_seconds or failures == policy.max_attempts:
                        return (
                            f"Dispatch to the Migrator failed: unreachable for {_duration_text(waited)} "
                            f"({failures} attempt(s)); last error: {message}"
                        )
                    if in_flight.needed():
                        retry = DispatchRetry(
                            attempt=failures + 1,
                            error=message,
                            next_attempt_at=workflow.now() + timedelta(seconds=delay),
                        )
                        in_flight.step.updated_at = workflow.now()  # moves the activity marker: live pages show it
                        self._enqueue(self._result(in_flight.step, retry.metadata()))
                try:
                    await workflow.wait_condition(lambda: not in_flight.needed(), timeout=timedelta(seconds=delay))
                    return None  # a callback moved the Step on while Loom waited: the Migrator has it
                except TimeoutError:
                    continue
            if failures and in_flight.needed():
                in_flight.step.updated_at = workflow.now()
                self._enqueue(self._result(in_flight.step))  # the retry notice goes
            return None

    # --- persistence ----------------------------------------------------------------------

    def _event(
        self,
        event_type: EventType,
        step: _Step | None = None,
        *,
        status: str | None = None,
        actor: str | None = None,
        duration_ms: int | None = None,
        metadata: StringMap | None = None,
    ) -> tuple[RunChange]:
        self._event_seq += 1
        event = StepEvent(
            run_id=self._manifest.run_id,
            migration_id=self._manifest.migration_id,
            candidate_id=self._manifest.candidate.id,
            step_name=step.name if step else None,
            event_type=event_type,
            status=str(status) if status is not None else None,
            actor=actor,
            duration_ms=duration_ms,
            metadata=dict(metadata or {}),
            created_at=workflow.now(),
        )
        # Deterministic: a retried activity or a replay after a worker crash writes the same key.
        return (RunChange(event=event, event_key=f"{workflow.info().run_id}:{self._event_seq}"),)

    def _result(self, step: _Step, notice: StringMap | None = None) -> RunChange:
        assert step.status is not None
        return RunChange(
            step_result=StepResult(
                step_name=step.name,
                candidate_id=self._manifest.candidate.id,
                status=step.status,
                metadata={**step.metadata, **(notice or {})},
                pr_url=step.pr_url,
                started_at=step.started_at,
                updated_at=step.updated_at,
                completed_at=step.completed_at,
            )
        )

    def _enqueue(self, *writes: RunChange) -> int:
        self._queue.extend(writes)
        self._queued += len(writes)
        return self._queued

    async def _persisted(self, *writes: RunChange) -> None:
        """For operator actions: queue writes, return once the Run's main loop has written them.

        The main loop is the read model's only writer, so the event log keeps the Run's order.
        Migrator callbacks only queue theirs: they go out with the next Step's dispatch.
        """
        target = self._enqueue(*writes)
        self._awaited = max(self._awaited, target)
        await workflow.wait_condition(lambda: self._flushed >= target)

    def _batch(self, writes: list[RunChange]) -> PersistBatch:
        return PersistBatch(
            run_id=self._manifest.run_id,
            migration_id=self._manifest.migration_id,
            candidate_id=self._manifest.candidate.id,
            writes=writes,
        )

    async def _record(self, *writes: RunChange) -> None:
        """For the main loop: queue writes and write everything queued."""
        self._enqueue(*writes)
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                await workflow.execute_local_activity_method(
                    RunActivities.persist,
                    self._batch(batch),
                    start_to_close_timeout=PERSIST_TIMEOUT,
                    retry_policy=PERSIST_RETRY,
                )
            except BaseException:
                self._queue = batch + self._queue  # idempotent writes: the cancellation cleanup sends them again
                raise
            self._flushed += len(batch)

    async def _wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait for the condition, writing what update handlers queue meanwhile.

        When the condition holds, queued writes stay queued: the next dispatch takes them along, so
        a Step's completion and the next Step's dispatch cost one activity. Queued writes wait while
        a dispatch in flight may not have written the ones it carries, so the log keeps the Run's order.
        """

        def may_write() -> bool:
            return bool(self._queue) and not any(d.unconfirmed() for d in self._in_flight)

        while True:
            await workflow.wait_condition(lambda: condition() or may_write())
            if condition():
                return
            await self._record()

    def _finish(
        self,
        step: _Step,
        status: StepStatus,
        metadata: StringMap | None = None,
        *extra: RunChange,
        actor: str | None = None,
    ) -> list[RunChange]:
        """Move the Step to a terminal status (merged, completed or failed); the writes that record it."""
        now = workflow.now()
        step.status = status
        step.metadata.update(metadata or {})
        step.updated_at = step.completed_at = now
        duration = int((now - step.started_at).total_seconds() * 1000) if step.started_at else None
        return [
            *extra,
            self._result(step),
            *self._event(
                EventType.STEP_COMPLETED, step, status=status, actor=actor, duration_ms=duration, metadata=metadata
            ),
        ]

    # --- validation: the rules live in the domain --------------------------------------------

    def _position(self) -> RunPosition:
        return RunPosition(
            run_id=self._manifest.run_id,
            candidate_id=self._manifest.candidate.id,
            steps={name: step.status for name, step in self._steps.items()},
            waiting_on=self._current,
        )

    @staticmethod
    def _refuse(refusal: str | None) -> None:
        if refusal is not None:
            raise StepNotInStateError(refusal)

    # --- updates: Migrator callbacks ------------------------------------------------------

    @workflow.update(name=STEP_EVENT_UPDATE)
    async def step_event(self, event: StepEventInput) -> None:
        step = self._steps[event.step_name]
        if step.status is event.status and not (
            event.status.waiting
            and any(step.metadata.get(k) != v for k, v in event.metadata.items())
            and workflow.patched(METADATA_UPDATES_PATCH)
        ):
            return  # the same callback again: already applied
        now = workflow.now()
        step.metadata.update(event.metadata)
        if "prUrl" in event.metadata:
            step.pr_url = event.metadata["prUrl"]
        # Accepted once it is in the Run's history; the read model follows within milliseconds.
        if event.status in (StepStatus.OPEN, StepStatus.AWAITING_REVIEW):
            step.status = event.status
            step.updated_at = now
            self._enqueue(
                self._result(step),
                *self._event(
                    EventType.STEP_UPDATED, step, status=event.status, actor=event.actor, metadata=event.metadata
                ),
            )
        else:
            self._enqueue(*self._finish(step, event.status, event.metadata, actor=event.actor))

    @step_event.validator
    def _validate_step_event(self, event: StepEventInput) -> None:
        self._refuse(callback_refusal(self._position(), event))

    # --- updates: operator actions --------------------------------------------------------

    @workflow.update(name=RETRY_STEP_UPDATE)
    async def retry_step(self, request: RetryStepInput) -> None:
        step = self._steps[request.step_name]
        step.status = StepStatus.IN_PROGRESS  # at once, so a second Retry is refused; the Run re-dispatches
        await self._persisted(*self._event(EventType.STEP_RETRIED, step, actor=request.actor))

    @retry_step.validator
    def _validate_retry_step(self, request: RetryStepInput) -> None:
        self._refuse(action_refusal(self._position(), StepAction.RETRY, request.step_name))

    @workflow.update(name=REVIEW_STEP_UPDATE)
    async def review_step(self, request: ReviewStepInput) -> None:
        step = self._steps[request.step_name]
        metadata = {"comment": request.comment} if request.comment else {}
        if request.approved:
            review = self._event(EventType.REVIEW_APPROVED, step, actor=request.actor, metadata=metadata)
            await self._persisted(*self._finish(step, StepStatus.COMPLETED, {}, *review))
        else:
            review = self._event(EventType.REVIEW_REJECTED, step, actor=request.actor, metadata=metadata)
            reason = {"error": f"Rejected by {request.actor}" + (f": {request.comment}" if request.comment else "")}
            await self._persisted(*self._finish(step, StepStatus.FAILED, reason, *review))

    @review_step.validator
    def _validate_review_step(self, request: ReviewStepInput) -> None:
        action = StepAction.APPROVE if request.approved else StepAction.REJECT
        self._refuse(action_refusal(self._position(), action, request.step_name))

    @workflow.update(name=MARK_MERGED_UPDATE)
    async def mark_merged(self, request: MarkMergedInput) -> None:
        step = self._steps[request.step_name]
        marked = self._event(EventType.STEP_MARKED_MERGED, step, actor=request.actor)
        await self._persisted(*self._finish(step, StepStatus.MERGED, {"mergedBy": request.actor}, *marked))

    @mark_merged.validator
    def _validate_mark_merged(self, request: MarkMergedInput) -> None:
        self._refuse(action_refusal(self._position(), StepAction.MARK_MERGED, request.step_name))

    @workflow.update(name=UPDATE_INPUTS_UPDATE)
    async def update_inputs(self, request: UpdateInputsInput) -> None:
        # From the next dispatch on, Steps see the new values merged over the discovered metadata.
        self._inputs.update(request.inputs)
        # Not awaited: the service saved the inputs already, and a dispatch in flight may hold the event back.
        self._enqueue(*self._event(EventType.INPUTS_UPDATED, actor=request.actor, metadata=request.inputs))

    @update_inputs.validator
    def _validate_update_inputs(self, request: UpdateInputsInput) -> None:
        if self._closing:
            raise StepNotInStateError(f"Run {self._manifest.run_id!r} is finishing; its inputs can no longer change")

    @workflow.signal(name=CANCEL_REQUESTED_SIGNAL)
    def cancel_requested(self, request: CancelRequest) -> None:
        """Sent just before the cancellation so the run_cancelled event can name who cancelled."""
        self._cancel_actor = request.actor

    @workflow.query(name=DESCRIBE_QUERY)
    def describe(self) -> RunView:
        return RunView(
            current_step=self._current,
            inputs=dict(self._inputs),
            steps=[
                StepView(name=s.name, status=s.status.value if s.status else None, dispatches=s.dispatches)
                for s in self._steps.values()
            ],
        )
