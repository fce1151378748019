"""The Run's only contact with the world: the read model (SQL store) and the Migrator (HTTP).

Built with its ports (see temporalio samples' hello_activity_method) so the worker decides
which store and notifier a Run talks to, and tests can hand it fakes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from loom_backend.domain import CandidateStatus, RunChange, StepStatus
from loom_backend.execution.messages import (
    DISPATCH_WRITE_SECONDS,
    MIGRATOR_REJECTED,
    MIGRATOR_UNAVAILABLE,
    READ_MODEL_UNAVAILABLE,
    ROLLOUT_LOOK_SIGNAL,
    DispatchInput,
    PersistBatch,
)
from loom_backend.migrator_client import DispatchRejected
from loom_backend.ports import MigratorNotifier, RunStore
from loom_backend.rollout import rollout_id

log = logging.getLogger(__name__)
LOOK_TIMEOUT = timedelta(seconds=1)


def _rollout_should_look(writes: list[RunChange]) -> bool:
    """The Run ended (completed, or cancelled back to not_started) or a Step failed: a rollout's slot, wave or
    breaker may have changed."""
    return any(
        w.candidate_status in (CandidateStatus.COMPLETED, CandidateStatus.NOT_STARTED)
        or (w.step_result is not None and w.step_result.status is StepStatus.FAILED)
        for w in writes
    )


def _writers_for(store: RunStore) -> int:
    """SQLite has one writer at a time: more threads only meet in its busy handler, which sleeps."""
    return 1 if str(getattr(store, "url", "")).startswith("sqlite") else 8


class RunActivities:
    def __init__(self, store: RunStore, notifier: MigratorNotifier, writers: int | None = None) -> None:
        self._store = store
        self._notifier = notifier
        # The Runs' writes get their own threads, so they neither wait behind nor crowd out the
        # default executor the API's reads use. On SQLite one thread: with 200 Runs at once,
        # threads racing for the write lock made a batch take 65 ms on average (bench/runs.py).
        self._writes = ThreadPoolExecutor(max_workers=writers or _writers_for(store), thread_name_prefix="loom-persist")
        self._rollout_policies: set[str] = set()  # Migrations known to have a rollout policy

    @activity.defn(name="loom_persist")
    async def persist(self, batch: PersistBatch) -> None:
        """Apply the Run's changes to the read model in order; every write is idempotent, so retries are safe."""
        await self._write(batch)

    async def _write(self, batch: PersistBatch, once: bool = False, within: float | None = None) -> None:
        """Apply the batch; with `within`, give up after that many seconds (TimeoutError).

        A write given up on that has not begun by then never begins: it would land after the Run's later writes.
        """
        store = self._store
        args = (batch.run_id, batch.migration_id, batch.candidate_id, batch.writes, once)
        deadline = None if within is None else time.monotonic() + within

        def write() -> None:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("given up before it began")
            store.apply_run_changes(*args)

        written = asyncio.get_running_loop().run_in_executor(self._writes, write)
        await asyncio.wait_for(written, within)
        if _rollout_should_look(batch.writes):
            await self._tell_rollout(batch.migration_id)

    async def _may_have_rollout(self, migration_id: str) -> bool:
        """Whether the Migration has a rollout policy, which a rollout needs. A Yes is kept; a No is asked again each
        time (one indexed read), since a policy saved a moment later may come with a rollout that waits on this."""
        if migration_id in self._rollout_policies:
            return True
        if await asyncio.to_thread(self._store.has_rollout_policy, migration_id):
            self._rollout_policies.add(migration_id)
            return True
        return False

    async def _tell_rollout(self, migration_id: str) -> None:
        """Signal the Migration's rollout to look now rather than at its next poll. Only a hint, sent once the
        change is in the read model, where the rollout reads it: no rollout, a closed one or an unreachable
        Temporal leave the poll to find the change, and a repeat costs one extra look. Migrations without a
        rollout policy (most) are not signalled at all: each signal to no rollout cost Temporal a lookup."""
        try:
            if not await self._may_have_rollout(migration_id):
                return
            handle = activity.client().get_workflow_handle(rollout_id(migration_id))
            await handle.signal(ROLLOUT_LOOK_SIGNAL, rpc_timeout=LOOK_TIMEOUT)
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                log.warning("The rollout of %s was not told a Run changed: %s", migration_id, exc.message)
        except Exception as exc:
            log.warning("The rollout of %s was not told a Run changed: %s", migration_id, exc)

    @activity.defn(name="loom_dispatch_step")
    async def dispatch_step(self, dispatch: DispatchInput) -> None:
        """Write the Run's pending changes, then POST the Step to its Migrator.

        The writes ride along so a Step costs the Run one activity, not a local one and another; they
        go first, so the read model shows the Step in progress before the Migrator can call back. A
        later attempt writes them only if no earlier one did. Each failure says whose it was: the Run
        retries a Migrator that is away, fails the Step on a 4xx, and never blames the Migrator for
        Loom's own database (the Migrator is not called until the writes are in).
        """
        if dispatch.writes.writes:
            try:
                once = dispatch.attempt > 1 or activity.info().attempt > 1
                await self._write(dispatch.writes, once=once, within=DISPATCH_WRITE_SECONDS)
            except Exception as exc:
                # A lock held elsewhere (SQLite waits up to its busy timeout) must not run out the activity's time:
                # the Run would take that for a Migrator that did not answer.
                reason = f"no answer within {DISPATCH_WRITE_SECONDS:.0f} s" if isinstance(exc, TimeoutError) else exc
                activity.logger.warning("Loom's database could not be written before a dispatch: %s", reason)
                raise ApplicationError(
                    f"Loom's database could not be written ({type(exc).__name__}: {reason})",
                    type=READ_MODEL_UNAVAILABLE,
                    non_retryable=True,
                ) from exc
        try:
            await self._notifier.dispatch_step(dispatch.request)
        except DispatchRejected as exc:
            raise ApplicationError(str(exc), type=MIGRATOR_REJECTED, non_retryable=True) from exc
        except Exception as exc:
            raise ApplicationError(str(exc) or repr(exc), type=MIGRATOR_UNAVAILABLE, non_retryable=True) from exc
