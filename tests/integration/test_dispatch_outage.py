"""A Run rides out a Migrator that is away and a database that hiccups, without an operator's Retry."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy.exc import OperationalError

from loom_backend.domain import DispatchRetry, EventType, StepStatus, StepStatusEvent
from loom_backend.execution.messages import DispatchPolicy
from loom_backend.store.sql_store import SqlStore
from tests.harness import eventually
from tests.integration.run_fixtures import *  # noqa: F403

CID = "checkout"
# Doubling from 50 ms, capped at 200 ms: a "long" outage of a few seconds is dozens of attempts.
PATIENT = DispatchPolicy(retry_window_seconds=60, initial_interval_seconds=0.05, maximum_interval_seconds=0.2)


def callback(step: str, status: str) -> StepStatusEvent:
    return StepStatusEvent(step_name=step, candidate_id=CID, status=StepStatus(status))


class UnwritableStore:
    """The real store, whose Run writes fail with the error SQLite gives for an unwritable file while `broken`."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self.broken = threading.Event()
        self.refused = 0

    def apply_run_changes(self, *args: Any, **kwargs: Any) -> None:
        if self.broken.is_set():
            self.refused += 1
            raise OperationalError("INSERT INTO step_events ...", {}, Exception("disk I/O error"))
        self._store.apply_run_changes(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def test_a_migrator_away_for_longer_than_a_few_attempts_is_waited_for_and_the_run_resumes_by_itself(
    make_loom, migrator
) -> None:
    async with make_loom(dispatch=PATIENT) as loom:
        migrator.answer, migrator.answer_text = 503, "migrator restarting"
        run = await loom.start(CID)

        def retrying() -> DispatchRetry | None:
            result = loom.results(CID).get("disable-prune")
            return DispatchRetry.of(result) if result else None

        await eventually(lambda: (r := retrying()) is not None and r.attempt >= 4)
        notice = retrying()
        assert notice is not None and "503" in notice.error and "migrator restarting" in notice.error
        waiting = loom.results(CID)["disable-prune"]
        assert waiting.status is StepStatus.IN_PROGRESS
        # Each notice touches the row, so the activity marker moves and open boards show it without a reload.
        assert waiting.updated_at is not None and waiting.started_at is not None
        assert waiting.updated_at > waiting.started_at

        attempts_while_down = migrator.attempts
        migrator.answer = 202
        first = await loom.dispatched("disable-prune")
        assert attempts_while_down >= 3
        await eventually(lambda: retrying() is None)  # the notice goes once the Migrator has the Step
        await loom.engine.step_event(run, callback("disable-prune", "merged"))
        await loom.dispatched("review")
        assert loom.results(CID)["disable-prune"].status is StepStatus.MERGED
        assert first.step_name == "disable-prune"
        assert not loom.has_event(CID, EventType.STEP_RETRIED)  # nobody pressed Retry
        kinds = [k for k in loom.event_kinds(CID) if k[1] == "disable-prune"]
        assert kinds == [
            ("step_dispatched", "disable-prune", "in_progress"),
            ("step_completed", "disable-prune", "merged"),
        ]


async def test_the_step_fails_only_when_the_retry_window_runs_out(make_loom, migrator) -> None:
    short = PATIENT.model_copy(update={"retry_window_seconds": 1.0})
    async with make_loom(dispatch=short) as loom:
        migrator.answer, migrator.answer_text = 503, "gone for good"
        await loom.start(CID)
        await eventually(
            lambda: (r := loom.results(CID).get("disable-prune")) is not None and r.status is StepStatus.FAILED
        )
        error = loom.results(CID)["disable-prune"].metadata["error"]
        assert "unreachable for" in error and "gone for good" in error
        assert migrator.attempts >= 2
        assert DispatchRetry.of(loom.results(CID)["disable-prune"]) is None


async def test_an_unwritable_database_is_waited_out_without_calling_the_migrator_or_failing_the_step(
    make_loom, migrator, sql_store
) -> None:
    flaky = UnwritableStore(sql_store)
    capped = PATIENT.model_copy(update={"max_attempts": 2})  # a Migrator failure would fail the Step at once
    async with make_loom(dispatch=capped, activities_store=flaky) as loom:
        flaky.broken.set()
        run = await loom.start(CID)
        await eventually(lambda: flaky.refused >= 5)
        assert migrator.attempts == 0  # the Migrator is not called until the writes are in
        assert loom.results(CID) == {}
        flaky.broken.clear()
        await loom.dispatched("disable-prune")
        assert loom.results(CID)["disable-prune"].status is StepStatus.IN_PROGRESS
        await loom.engine.step_event(run, callback("disable-prune", "merged"))
        await loom.dispatched("review")
        assert "error" not in loom.results(CID)["disable-prune"].metadata
        assert migrator.attempts == 2
