"""The ExecutionEngine port on Temporal: start, cancel and talk to Runs; map Temporal's answers to Loom's errors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from typing import Any

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    DescribeTaskQueueRequest,
    GetSystemInfoRequest,
)
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from loom_backend import errors, tracing
from loom_backend.domain import MigrationManifest, ReadinessCheck, StepStatusEvent, StringMap, parse_run_id
from loom_backend.execution.messages import (
    BULK_WORKFLOW_NAME,
    CANCEL_REQUESTED_SIGNAL,
    DESCRIBE_QUERY,
    MARK_MERGED_UPDATE,
    RETRY_STEP_UPDATE,
    REVIEW_STEP_UPDATE,
    ROLLOUT_ACTION_UPDATE,
    ROLLOUT_NOT_IN_STATE,
    ROLLOUT_POLICY_UPDATE,
    ROLLOUT_WORKFLOW_NAME,
    STEP_EVENT_UPDATE,
    STEP_NOT_IN_STATE,
    UPDATE_INPUTS_UPDATE,
    WORKFLOW_NAME,
    BulkInput,
    CancelRequest,
    DispatchPolicy,
    MarkMergedInput,
    RetryStepInput,
    ReviewStepInput,
    RolloutActionInput,
    RolloutInput,
    RolloutPolicyInput,
    RunInput,
    RunView,
    StepEventInput,
    UpdateInputsInput,
)
from loom_backend.rollout import BulkOperation, RolloutPolicy, RolloutState, bulk_id, rollout_id
from loom_backend.settings import Settings

log = logging.getLogger(__name__)

UPDATE_ATTEMPTS = 10
# How often a process asks Temporal whether it is up, so routes that need it answer 503 at once while it is not.
PROBE_SECONDS = 2.0
PROBE_TIMEOUT = timedelta(seconds=1.5)
# For this long after Temporal was last seen down, calls fail at once; then one is let through to find out.
REFUSE_SECONDS = 2 * PROBE_SECONDS
# Calls an operator waits on answer within this, or fail as unavailable (the client would retry for ~10 s).
CALL_TIMEOUT = timedelta(seconds=5)
_UNREACHABLE = frozenset({RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED})


def temporal_address(settings: Settings) -> str:
    return settings.temporal_address or f"127.0.0.1:{settings.temporal_dev_port}"


async def connect(settings: Settings, address: str | None = None) -> Client:
    """A Client whose payloads are pydantic models, as the Run and its activities expect."""
    return await Client.connect(
        address or temporal_address(settings),
        namespace=settings.temporal_namespace,
        data_converter=pydantic_data_converter,
        interceptors=tracing.temporal_interceptors(),
    )


def dispatch_policy(settings: Settings) -> DispatchPolicy:
    return DispatchPolicy(
        retry_window_seconds=settings.dispatch_retry_seconds,
        maximum_interval_seconds=settings.dispatch_backoff_max_seconds,
        max_attempts=settings.dispatch_max_attempts,
        timeout_seconds=settings.dispatch_timeout_seconds,
    )


def _candidate_id(run_id: str) -> str:
    return parse_run_id(run_id)[1]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RPCError):
        return f"{exc.status.name if exc.status else 'error'}: {exc.message}"[:300]
    return (str(exc) or type(exc).__name__)[:300]


def _run_is_gone(exc: RPCError) -> bool:
    """NOT_FOUND, or a Run that already closed: either way the caller should stop sending."""
    return exc.status == RPCStatusCode.NOT_FOUND or "already completed" in exc.message.lower()


class TemporalEngine:
    """One workflow per Run, with the RunID as workflow id.

    Actions go through updates whose validators refuse what does not fit the Step's status,
    so a refusal comes back synchronously as StepNotInState (HTTP 409) and never enters the
    Run's history.
    """

    def __init__(
        self,
        client: Client,
        task_queue: str,
        dispatch: DispatchPolicy | None = None,
        cancel_timeout_seconds: float = 30.0,
        rollout_poll_seconds: float = 1.0,
    ) -> None:
        self._rollout_poll = rollout_poll_seconds
        self._client = client
        self._task_queue = task_queue
        self._dispatch = dispatch or DispatchPolicy()
        self._cancel_timeout = cancel_timeout_seconds
        self._unreachable: str | None = None  # why Temporal is down, as the last probe or call saw it
        self._unreachable_at = 0.0  # when (time.monotonic) it was last seen down

    @property
    def client(self) -> Client:
        return self._client

    # -- is Temporal there? -------------------------------------------------------------------

    async def watch(self) -> None:
        """Ask Temporal every couple of seconds whether it answers; run as a background task of the process."""
        while True:
            try:
                await self._client.workflow_service.get_system_info(GetSystemInfoRequest(), timeout=PROBE_TIMEOUT)
                if self._unreachable is not None:
                    log.warning("Temporal answers again")
                self._unreachable = None
            except Exception as exc:
                if self._unreachable is None:
                    log.error("Temporal does not answer: %s", exc)
                self._down(exc)
            await asyncio.sleep(PROBE_SECONDS)

    def _down(self, exc: BaseException) -> None:
        self._unreachable, self._unreachable_at = _reason(exc), time.monotonic()

    @contextlib.contextmanager
    def _reachable(self) -> Iterator[None]:
        """Fail at once while Temporal was just seen down; turn "cannot reach it" into ServiceUnavailable (503).

        "Just": within REFUSE_SECONDS, which `watch` renews while it probes in vain. Without a probe running, the
        next call after that tries again, so one failed call does not refuse every later one.
        """
        if self._unreachable is not None and time.monotonic() - self._unreachable_at < REFUSE_SECONDS:
            raise errors.ServiceUnavailable(
                f"Temporal is unreachable ({self._unreachable}); Runs resume when it is back — try again shortly"
            )
        try:
            yield
        except RPCError as exc:
            if exc.status not in _UNREACHABLE:
                raise
            self._down(exc)
            raise errors.ServiceUnavailable(
                f"Temporal is unreachable ({self._unreachable}); Runs resume when it is back — try again shortly"
            ) from exc
        self._unreachable = None  # it answered

    async def readiness(self) -> list[ReadinessCheck]:
        """Temporal answers, the namespace exists, and some worker polls the Runs' task queue."""
        service = self._client.workflow_service
        namespace = self._client.namespace
        try:
            await service.get_system_info(GetSystemInfoRequest(), timeout=PROBE_TIMEOUT)
        except Exception as exc:
            return [ReadinessCheck(name="temporal", ok=False, detail=f"Temporal does not answer: {_reason(exc)}")]
        checks = [ReadinessCheck(name="temporal", ok=True)]
        try:
            await service.describe_namespace(DescribeNamespaceRequest(namespace=namespace), timeout=PROBE_TIMEOUT)
        except Exception as exc:
            detail = f"namespace {namespace!r} is not usable: {_reason(exc)}"
            return [*checks, ReadinessCheck(name="temporal_namespace", ok=False, detail=detail)]
        checks.append(ReadinessCheck(name="temporal_namespace", ok=True, detail=namespace))
        try:
            queue = await service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=namespace,
                    task_queue=TaskQueue(name=self._task_queue),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                ),
                timeout=PROBE_TIMEOUT,
            )
            polled = bool(queue.pollers)
            detail = (
                f"{len(queue.pollers)} worker(s) poll {self._task_queue!r}"
                if polled
                else f"no worker polls task queue {self._task_queue!r}: start `loom worker` or set LOOM_RUN_WORKER=true"
            )
        except Exception as exc:
            polled, detail = False, f"task queue {self._task_queue!r} could not be described: {_reason(exc)}"
        return [*checks, ReadinessCheck(name="worker", ok=polled, detail=detail)]

    def _handle(self, run_id: str) -> WorkflowHandle[Any, Any]:
        return self._client.get_workflow_handle(run_id)

    async def start_run(self, manifest: MigrationManifest, actor: str) -> None:
        if parse_run_id(manifest.run_id) != (manifest.migration_id, manifest.candidate.id):
            # Only a Migration stored before ids were checked can get here: its Run id names another's Run.
            raise errors.InvalidInput(
                f"Migration {manifest.migration_id!r} cannot start Runs: its id contains '__' or ends with '_', "
                f"so Run id {manifest.run_id!r} could be another Migration's; announce it under a new id",
                field="migrationId",
            )
        try:
            with self._reachable():
                await self._client.start_workflow(
                    WORKFLOW_NAME,
                    RunInput(manifest=manifest, actor=actor, dispatch=self._dispatch),
                    id=manifest.run_id,
                    task_queue=self._task_queue,
                    # A closed Run (completed or cancelled) may run again; a running one may not.
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                    rpc_timeout=CALL_TIMEOUT,
                )
        except WorkflowAlreadyStartedError as exc:
            raise errors.CandidateAlreadyStarted(manifest.candidate.id, "running") from exc

    async def cancel_run(self, run_id: str, actor: str) -> None:
        """Cancel and wait (bounded) for the Run to close, so its cleanup already ran when this returns."""
        handle = self._handle(run_id)
        try:
            with self._reachable():
                description = await handle.describe(rpc_timeout=CALL_TIMEOUT)
                if description.status != WorkflowExecutionStatus.RUNNING:
                    raise errors.CandidateNotRunning(_candidate_id(run_id))
                handle = self._client.get_workflow_handle(run_id, run_id=description.run_id)
                await handle.signal(CANCEL_REQUESTED_SIGNAL, CancelRequest(actor=actor), rpc_timeout=CALL_TIMEOUT)
                await handle.cancel(rpc_timeout=CALL_TIMEOUT)
        except RPCError as exc:
            if _run_is_gone(exc):
                raise errors.CandidateNotRunning(_candidate_id(run_id)) from exc
            raise
        try:
            await asyncio.wait_for(handle.result(), timeout=self._cancel_timeout)
        except WorkflowFailureError:
            pass  # the expected outcome: the Run ended as cancelled
        except TimeoutError:
            # The cancellation is recorded in Temporal and will run once a worker picks it up.
            log.warning("Run %s did not close within %.0f s of its cancellation", run_id, self._cancel_timeout)

    async def _send_update(
        self,
        workflow_id: str,
        update: str,
        arg: Any,
        *,
        still_running: Callable[[], Awaitable[bool]],
        gone: Callable[[], Exception],
        refused_type: str,
        refused: Callable[[str], Exception],
    ) -> None:
        """Send one update until the server takes it, with one id for every attempt: the server answers a repeat
        with the first outcome and never applies it twice. Asked again: "workflow not ready" (the workflow task in
        flight failed, say a Step's dispatch answered while the Run was completing it, and the server dropped the
        update) and NOT_FOUND while the workflow still runs (under load the server can lose an update it had not
        accepted yet; a rollout is briefly absent between the runs of continue-as-new)."""
        update_id = str(uuid.uuid4())
        delay = 0.02
        for attempt in range(1, UPDATE_ATTEMPTS + 1):
            last = attempt == UPDATE_ATTEMPTS
            try:
                with self._reachable():
                    await self._client.get_workflow_handle(workflow_id).execute_update(update, arg, id=update_id)
                return
            except RPCError as exc:
                if _run_is_gone(exc):
                    if last or not await still_running():
                        log.info("Update %s for %s refused: %s", update, workflow_id, exc.message)
                        raise gone() from exc
                elif exc.status != RPCStatusCode.FAILED_PRECONDITION or last:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
            except WorkflowUpdateFailedError as exc:
                cause = exc.cause
                if isinstance(cause, ApplicationError) and cause.type == refused_type:
                    raise refused(cause.message) from exc
                raise

    async def _update(self, run_id: str, update: str, arg: Any) -> None:
        await self._send_update(
            run_id,
            update,
            arg,
            still_running=lambda: self.is_running(run_id),
            gone=lambda: errors.RunNotFound(run_id),
            refused_type=STEP_NOT_IN_STATE,
            refused=errors.StepNotInState,
        )

    async def step_event(self, run_id: str, event: StepStatusEvent, actor: str | None = None) -> None:
        await self._update(run_id, STEP_EVENT_UPDATE, StepEventInput(**dict(event), actor=actor))

    async def retry_step(self, run_id: str, step_name: str, actor: str) -> None:
        await self._update(run_id, RETRY_STEP_UPDATE, RetryStepInput(step_name=step_name, actor=actor))

    async def review_step(self, run_id: str, step_name: str, approved: bool, actor: str, comment: str | None) -> None:
        request = ReviewStepInput(step_name=step_name, approved=approved, actor=actor, comment=comment)
        await self._update(run_id, REVIEW_STEP_UPDATE, request)

    async def mark_merged(self, run_id: str, step_name: str, actor: str) -> None:
        await self._update(run_id, MARK_MERGED_UPDATE, MarkMergedInput(step_name=step_name, actor=actor))

    async def update_inputs(self, run_id: str, inputs: StringMap, actor: str) -> None:
        await self._update(run_id, UPDATE_INPUTS_UPDATE, UpdateInputsInput(inputs=inputs, actor=actor))

    async def is_running(self, run_id: str) -> bool:
        try:
            with self._reachable():
                description = await self._handle(run_id).describe(rpc_timeout=CALL_TIMEOUT)
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return description.status == WorkflowExecutionStatus.RUNNING

    async def describe(self, run_id: str) -> RunView:
        """Where a running Run is (current Step, inputs, dispatch counts); raises RunNotFound."""
        try:
            with self._reachable():
                return await self._handle(run_id).query(DESCRIBE_QUERY, result_type=RunView, rpc_timeout=CALL_TIMEOUT)
        except RPCError as exc:
            if _run_is_gone(exc):
                raise errors.RunNotFound(run_id) from exc
            raise

    # -- the rollout and bulk operations ----------------------------------------------------------

    async def start_rollout(self, state: RolloutState) -> None:
        try:
            with self._reachable():
                await self._client.start_workflow(
                    ROLLOUT_WORKFLOW_NAME,
                    RolloutInput(state=state, poll_seconds=self._rollout_poll),
                    id=rollout_id(state.migration_id),
                    task_queue=self._task_queue,
                    id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                    rpc_timeout=CALL_TIMEOUT,
                )
        except WorkflowAlreadyStartedError as exc:
            raise errors.RolloutConflict(
                f"Migration {state.migration_id!r} has a rollout in progress; stop it before starting another"
            ) from exc

    async def _rollout_update(self, migration_id: str, update: str, arg: Any) -> None:
        async def asked_again() -> bool:
            return True  # gone, or between one run and the next of continue-as-new: ask again, then give up

        await self._send_update(
            rollout_id(migration_id),
            update,
            arg,
            still_running=asked_again,
            gone=lambda: errors.RolloutNotRunning(migration_id),
            refused_type=ROLLOUT_NOT_IN_STATE,
            refused=errors.RolloutConflict,
        )

    async def rollout_action(self, migration_id: str, action: str, actor: str) -> None:
        await self._rollout_update(migration_id, ROLLOUT_ACTION_UPDATE, RolloutActionInput(action=action, actor=actor))

    async def update_rollout_policy(self, migration_id: str, policy: RolloutPolicy, actor: str) -> None:
        await self._rollout_update(migration_id, ROLLOUT_POLICY_UPDATE, RolloutPolicyInput(policy=policy, actor=actor))

    async def start_bulk(self, operation: BulkOperation, candidate_ids: list[str]) -> None:
        request = operation.request
        with self._reachable():
            await self._client.start_workflow(
                BULK_WORKFLOW_NAME,
                BulkInput(
                    op_id=operation.id,
                    migration_id=operation.migration_id,
                    action=operation.action,
                    actor=operation.actor,
                    candidate_ids=candidate_ids,
                    step_name=str(request["stepName"]) if request.get("stepName") else None,
                    comment=str(request["comment"]) if request.get("comment") else None,
                ),
                id=bulk_id(operation.id),
                task_queue=self._task_queue,
                rpc_timeout=CALL_TIMEOUT,
            )
