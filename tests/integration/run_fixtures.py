"""Fixtures for Run tests: the session's real Temporal dev server, the real HTTP fake Migrator,
a real SQLite store and a worker on a fresh task queue per test."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType as TemporalEventType
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Replayer

from loom_backend.domain import (
    Candidate,
    CandidateStatus,
    DispatchStepRequest,
    EventType,
    MigrationAnnouncement,
    MigrationManifest,
    StepDefinition,
    StepEvent,
    StepResult,
    steps_for,
)
from loom_backend.execution.activities import RunActivities
from loom_backend.execution.engine import TemporalEngine, connect
from loom_backend.execution.messages import DispatchPolicy
from loom_backend.execution.worker import build_worker
from loom_backend.execution.workflow import RunWorkflow
from loom_backend.migrator_client import HttpMigratorNotifier
from loom_backend.settings import Settings
from loom_backend.store.sql_store import SqlStore
from tests.harness import FakeMigrator, eventually

# What a test module imports with `from ... import *`: the fixtures.
__all__ = ["make_loom", "migrator", "migrator_server", "sql_store", "temporal_client"]

# Small and fast: three attempts 50-100 ms apart before a Step is failed.
TEST_DISPATCH = DispatchPolicy(
    max_attempts=3, initial_interval_seconds=0.05, maximum_interval_seconds=0.1, timeout_seconds=2.0
)


@pytest.fixture(scope="session")
async def temporal_client(temporal_address: str) -> Client:
    return await connect(Settings(), temporal_address)


@pytest.fixture(scope="session")
async def migrator_server() -> AsyncIterator[FakeMigrator]:
    async with FakeMigrator().serving() as migrator:
        yield migrator


@pytest.fixture
def migrator(migrator_server: FakeMigrator) -> FakeMigrator:
    migrator_server.reset()
    return migrator_server


@pytest.fixture
def sql_store(tmp_path: Path) -> SqlStore:
    store = SqlStore(f"sqlite:///{tmp_path / 'loom.db'}")
    store.upgrade_schema()
    return store


@dataclass
class Loom:
    """A Migration announced to a real store, with an engine and a worker on a fresh task queue."""

    store: SqlStore
    engine: TemporalEngine
    migrator: FakeMigrator
    migration_id: str
    steps: list[StepDefinition]
    candidates: dict[str, Candidate]

    def run_id(self, candidate_id: str) -> str:
        return f"{self.migration_id}__{candidate_id}"

    async def start(self, candidate_id: str, inputs: dict[str, str] | None = None) -> str:
        candidate = self.candidates[candidate_id]
        status = self.store.claim_candidate(self.migration_id, candidate_id, inputs or {})
        assert status is None, f"candidate already {status}"
        manifest = MigrationManifest(
            migration_id=self.migration_id,
            migrator_url=self.migrator.url,
            candidate=candidate,
            steps=steps_for(candidate, self.steps),
            inputs=inputs or {},
        )
        await self.engine.start_run(manifest, "alice")
        return manifest.run_id

    async def dispatched(self, step_name: str, count: int = 1, timeout: float = 10.0) -> DispatchStepRequest:
        """Wait for the count-th dispatch of a Step and return it."""
        found = await eventually(
            lambda: self.migrator.of(self.migration_id, step_name)[count - 1 :],
            timeout,
            f"dispatch #{count} of Step {step_name!r}",
        )
        return found[0]

    def results(self, candidate_id: str) -> dict[str, StepResult]:
        return {r.step_name: r for r in self.store.step_results(self.run_id(candidate_id))}

    def events(self, candidate_id: str | None = None) -> list[StepEvent]:
        page = self.store.list_events(self.migration_id, candidate_id=candidate_id, limit=1000)
        return sorted(page.events, key=lambda e: e.id or 0)

    def event_kinds(self, candidate_id: str) -> list[tuple[str, str | None, str | None]]:
        return [(e.event_type.value, e.step_name, e.status) for e in self.events(candidate_id)]

    def candidate_status(self, candidate_id: str) -> CandidateStatus:
        candidate = self.store.get_candidate(self.migration_id, candidate_id)
        assert candidate is not None
        return candidate.status

    async def run_finished(self, candidate_id: str) -> None:
        """Wait for the Run's last event in the read model and then for Temporal to close the Run.

        The Run writes run_completed (a local activity) before its workflow returns, so for a few
        milliseconds the read model says completed while Temporal still says running.
        """
        await eventually(lambda: self.candidate_status(candidate_id) is not CandidateStatus.RUNNING)
        await eventually(lambda: self.has_event(candidate_id, EventType.RUN_COMPLETED, EventType.RUN_CANCELLED))
        await self.closed(candidate_id)

    async def closed(self, candidate_id: str, timeout: float = 10.0) -> None:
        """Wait until Temporal no longer reports the Run as running."""

        async def closed() -> bool:
            return not await self.engine.is_running(self.run_id(candidate_id))

        await eventually(closed, timeout, f"Run {self.run_id(candidate_id)} to close")

    async def dispatch_cancel_requested(self, candidate_id: str) -> None:
        """Wait until the Run, cancelled, has asked its dispatch in flight to stop (and so waits for it)."""

        async def requested() -> bool:
            history = await self.engine.client.get_workflow_handle(self.run_id(candidate_id)).fetch_history()
            return any(
                e.event_type == TemporalEventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED for e in history.events
            )

        await eventually(requested, what=f"the cancel of Run {self.run_id(candidate_id)} to reach its dispatch")

    async def terminate_leftovers(self) -> None:
        """Terminate the Runs a test left running; one that closes on its own meanwhile is fine."""
        for candidate_id in self.candidates:
            run_id = self.run_id(candidate_id)
            if not await self.engine.is_running(run_id):
                continue
            try:
                await self.engine.client.get_workflow_handle(run_id).terminate()
            except RPCError as exc:
                # "workflow execution already completed": it closed between the check and the terminate.
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise

    async def replay_in_sandbox(self) -> int:
        """Replay every Run of this test through Temporal's workflow sandbox; return how many.

        Workers run the Run unsandboxed (the sandbox cost a third of the app's CPU per Step), so this
        is where a non-deterministic call (time, randomness, I/O) in workflow.py would still fail a test.
        """
        histories: list[WorkflowHistory] = []
        for candidate_id in self.candidates:
            try:
                histories.append(
                    await self.engine.client.get_workflow_handle(self.run_id(candidate_id)).fetch_history()
                )
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
        replayer = Replayer(workflows=[RunWorkflow], data_converter=pydantic_data_converter)  # the default: sandboxed
        for history in histories:
            await replayer.replay_workflow(history)
        return len(histories)

    def has_event(self, candidate_id: str, *types: EventType) -> bool:
        return any(e.event_type in types for e in self.events(candidate_id))


DEFAULT_STEPS = [
    StepDefinition(name="disable-prune", migrator_app="chart-migrator", type="disable-base-resource-prune"),
    StepDefinition(name="review", migrator_app="chart-migrator", type="manual-review"),
    StepDefinition(name="bump-chart", migrator_app="chart-migrator", config={"chart": "app"}),
]


@pytest.fixture
def make_loom(
    temporal_client: Client, migrator: FakeMigrator, sql_store: SqlStore
) -> Callable[..., contextlib.AbstractAsyncContextManager[Loom]]:
    @contextlib.asynccontextmanager
    async def factory(
        steps: list[StepDefinition] | None = None,
        candidates: list[Candidate] | None = None,
        dispatch: DispatchPolicy = TEST_DISPATCH,
        notifier_timeout: float = 2.0,
        activities_store: Any = None,
    ) -> AsyncIterator[Loom]:
        steps = steps or DEFAULT_STEPS
        candidates = candidates or [
            Candidate(id="checkout", kind="application", metadata={"team": "payments", "image": "v1"})
        ]
        migration_id = f"m-{uuid.uuid4().hex[:10]}"
        sql_store.announce(
            MigrationAnnouncement(
                id=migration_id,
                name="Chart upgrade",
                description="Upgrade every chart",
                steps=steps,
                candidates=candidates,
                migrator_url=migrator.url,
            ),
            datetime.now(UTC),
        )
        task_queue = f"runs-{uuid.uuid4().hex}"
        notifier = HttpMigratorNotifier(timeout_seconds=notifier_timeout)
        worker = build_worker(temporal_client, task_queue, RunActivities(activities_store or sql_store, notifier))
        engine = TemporalEngine(temporal_client, task_queue, dispatch=dispatch, cancel_timeout_seconds=10)
        loom = Loom(sql_store, engine, migrator, migration_id, steps, {c.id: c for c in candidates})
        async with worker:
            try:
                yield loom
            finally:
                await loom.terminate_leftovers()
            await loom.replay_in_sandbox()
        await notifier.aclose()

    return factory
