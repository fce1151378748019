"""Rollouts on the real Temporal server: caps sampled every 100 ms, waves with gates, dependencies, the breaker,
pause and resume, a bulk retry, and a worker restarted mid-rollout. The Migrator is a real HTTP fake that answers
each dispatch itself after a delay."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from loom_backend import errors
from loom_backend.auth import AccessControl
from loom_backend.domain import (
    Candidate,
    CandidateStatus,
    EventType,
    MigrationAnnouncement,
    Principal,
    PrincipalKind,
    Role,
    StepDefinition,
)
from loom_backend.execution.activities import RunActivities
from loom_backend.execution.engine import TemporalEngine, connect
from loom_backend.execution.messages import RolloutStartManyInput
from loom_backend.execution.rollout_activities import RolloutActivities
from loom_backend.execution.rollout_workflow import BulkWorkflow, RolloutWorkflow
from loom_backend.execution.worker import build_worker
from loom_backend.migrator_client import HttpMigratorNotifier
from loom_backend.rollout import (
    BulkRequest,
    BulkState,
    CandidateFilter,
    RolloutPhase,
    RolloutPolicy,
    RolloutStartRequest,
    RolloutStatus,
    rollout_id,
)
from loom_backend.service import LoomService
from loom_backend.settings import Settings
from loom_backend.store.auth_store import SqlAuthStore
from loom_backend.store.sql_store import SqlStore
from tests.harness import CallbackMigrator, LiveLoom, eventually
from tests.integration.run_fixtures import TEST_DISPATCH

ANA = Principal("ana", PrincipalKind.USER, Role.OPERATOR)
STEPS = [StepDefinition(name="bump", migrator_app="m")]


@dataclass
class Rollout:
    """A Migration in a real store, a service over the real engine, a worker for Runs and rollouts, a Migrator."""

    store: SqlStore
    service: LoomService
    engine: TemporalEngine
    migrator: CallbackMigrator
    migration_id: str
    client: Client
    task_queue: str
    samples: list[list[Any]] = field(default_factory=list)
    worker: Any = None
    worker_task: asyncio.Task[None] | None = None
    notifier: HttpMigratorNotifier | None = None

    async def start_worker(self) -> None:
        self.notifier = HttpMigratorNotifier(timeout_seconds=2.0)
        self.worker = build_worker(
            self.client,
            self.task_queue,
            RunActivities(self.store, self.notifier),
            rollout=RolloutActivities(self.service, self.store, self.store, self.store),
        )
        self.worker_task = asyncio.create_task(self.worker.run())

    async def stop_worker(self) -> None:
        """Shut the worker down (in-flight activities get the grace period), as a process stopping would."""
        await self.worker.shutdown()
        assert self.worker_task is not None
        with contextlib.suppress(BaseException):
            await self.worker_task
        if self.notifier is not None:
            await self.notifier.aclose()

    def running(self) -> list[Any]:
        page = self.store.list_candidates(
            self.migration_id, CandidateFilter(status=CandidateStatus.RUNNING), limit=5000
        )
        return page.candidates

    async def status(self) -> RolloutStatus:
        return await self.service.rollout_status(ANA, self.migration_id)

    async def reaches(self, *states: RolloutPhase, timeout: float = 30) -> RolloutStatus:
        return await eventually(self.status, timeout, f"the rollout to be {states}", until=lambda s: s.state in states)

    def starts(self) -> list[str]:
        """Candidates in the order their Runs started, from the event log (a repeat would show twice)."""
        events = self.store.list_events(self.migration_id, event_type=EventType.RUN_STARTED, limit=1000).events
        return [e.candidate_id for e in sorted(events, key=lambda e: e.id or 0)]

    def actions(self) -> list[tuple[str, str | None]]:
        """The rollout's actions in the event log, oldest first: (event type, actor)."""
        events = self.store.list_events(self.migration_id, candidate_id="", limit=1000).events
        found = [e for e in sorted(events, key=lambda e: e.id or 0) if e.run_id.startswith("rollout:")]
        return [(e.event_type.value, e.actor) for e in found]

    def completed_at(self, candidate_id: str) -> int:
        events = self.store.list_events(self.migration_id, candidate_id=candidate_id, limit=100).events
        return next(e.id or 0 for e in events if e.event_type is EventType.RUN_COMPLETED)

    def started_at(self, candidate_id: str) -> int:
        events = self.store.list_events(self.migration_id, candidate_id=candidate_id, limit=100).events
        return next(e.id or 0 for e in events if e.event_type is EventType.RUN_STARTED)

    @contextlib.asynccontextmanager
    async def sampling(self, every: float = 0.1) -> AsyncIterator[list[list[Any]]]:
        """Sample the running Candidates every 100 ms while the block runs."""

        async def sample() -> None:
            while True:
                self.samples.append(await asyncio.to_thread(self.running))
                await asyncio.sleep(every)

        task = asyncio.create_task(sample())
        try:
            yield self.samples
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.fixture
async def make_rollout(
    temporal_address: str, tmp_path: Path
) -> AsyncIterator[Callable[..., contextlib.AbstractAsyncContextManager[Rollout]]]:
    client = await connect(Settings(), temporal_address)

    @contextlib.asynccontextmanager
    async def factory(
        candidates: list[Candidate],
        delay: float = 0.2,
        outcome: Callable[[Any], str] | None = None,
        poll_seconds: float = 0.1,
        steps: list[StepDefinition] = STEPS,
    ) -> AsyncIterator[Rollout]:
        store = SqlStore(f"sqlite:///{tmp_path / f'loom-{uuid.uuid4().hex[:6]}.db'}")
        store.upgrade_schema()
        task_queue = f"rollout-{uuid.uuid4().hex}"
        engine = TemporalEngine(client, task_queue, dispatch=TEST_DISPATCH, rollout_poll_seconds=poll_seconds)
        notifier = HttpMigratorNotifier(timeout_seconds=2.0)
        service = LoomService.over(store, engine, notifier, AccessControl(SqlAuthStore(store.engine)))
        migrator = CallbackMigrator(delay=lambda _: delay, deliver=engine.step_event)
        if outcome is not None:
            migrator.outcome = outcome
        async with migrator.serving():
            migration_id = f"m-{uuid.uuid4().hex[:8]}"
            store.announce(
                MigrationAnnouncement(
                    id=migration_id,
                    name="Rollout",
                    description="By policy",
                    steps=steps,
                    candidates=candidates,
                    migrator_url=migrator.url,
                ),
                datetime.now(UTC),
            )
            rollout = Rollout(store, service, engine, migrator, migration_id, client, task_queue)
            await rollout.start_worker()
            try:
                yield rollout
            finally:
                with contextlib.suppress(Exception):
                    await client.get_workflow_handle(rollout_id(migration_id)).terminate()
                await rollout.stop_worker()
            await replay_in_sandbox(client, migration_id)
        await notifier.aclose()
        store.engine.dispose()

    yield factory


async def replay_in_sandbox(client: Client, migration_id: str) -> None:
    """Workers run unsandboxed; the replay in the sandbox is where non-determinism in the rollout would show."""
    history = await client.get_workflow_handle(rollout_id(migration_id)).fetch_history()
    replayer = Replayer(workflows=[RolloutWorkflow, BulkWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(history)


async def test_a_rollout_begun_before_one_activity_started_many_replays_as_it_ran() -> None:
    """A history recorded by the code before ROLLOUT_LEAN_PATCH (an activity per Start, autoRetry retrying two
    failures, the status written before each wait) replays on today's: running rollouts survive the upgrade."""
    text = (Path(__file__).parent / "histories" / "rollout_one_start_per_activity.json").read_text()
    replayer = Replayer(workflows=[RolloutWorkflow, BulkWorkflow], data_converter=pydantic_data_converter)
    await replayer.replay_workflow(WorkflowHistory.from_json("rollout:old", text))


def services(n: int, owners: int = 0) -> list[Candidate]:
    return [
        Candidate(id=f"svc-{i:02d}", kind="service", metadata={"owner": f"team-{i % owners}"} if owners else {})
        for i in range(n)
    ]


async def start(rollout: Rollout, **policy: Any) -> None:
    await rollout.service.set_rollout_policy(ANA, rollout.migration_id, RolloutPolicy.model_validate(policy))
    await rollout.service.start_rollout(ANA, rollout.migration_id, RolloutStartRequest())


async def test_max_running_is_never_exceeded_and_all_sixty_complete(make_rollout: Any) -> None:
    async with make_rollout(services(60), delay=0.15) as rollout:
        async with rollout.sampling() as samples:
            await start(rollout, maxRunning=5)
            status = await rollout.reaches(RolloutPhase.COMPLETED, timeout=120)
        assert status.counts.completed == 60
        assert max(len(s) for s in samples) <= 5
        assert max(len(s) for s in samples) == 5, "the cap is used, not only respected"
        assert sorted(rollout.starts()) == [f"svc-{i:02d}" for i in range(60)], "each Candidate started once"


async def test_a_run_ending_wakes_the_rollout_which_polls_only_hourly_and_runs_without_one_end_as_ever(
    make_rollout: Any,
) -> None:
    """The Runs' activities signal the rollout once a Run's end is written, so it starts the next Candidate then:
    with an hourly poll, the signals are all that can move this rollout on within the test's minute."""
    async with make_rollout(services(5), delay=0.05, poll_seconds=3600) as rollout:

        async def completed(candidate_id: str) -> None:
            def status() -> Any:
                found = rollout.store.get_candidate(rollout.migration_id, candidate_id)
                return found.status if found else None

            await eventually(status, 30, f"{candidate_id} to complete", until=lambda s: s is CandidateStatus.COMPLETED)

        await rollout.service.start_run(ANA, rollout.migration_id, "svc-03", {})
        await completed("svc-03")  # no rollout to tell: the Run ends as ever
        policy = RolloutPolicy.model_validate({"maxRunning": 1})
        await rollout.service.set_rollout_policy(ANA, rollout.migration_id, policy)
        selection = RolloutStartRequest(candidate_ids=["svc-00", "svc-01", "svc-02"])
        await rollout.service.start_rollout(ANA, rollout.migration_id, selection)
        status = await rollout.reaches(RolloutPhase.COMPLETED, timeout=60)
        assert status.counts.completed == 3
        assert rollout.starts() == ["svc-03", "svc-00", "svc-01", "svc-02"]
        await rollout.service.start_run(ANA, rollout.migration_id, "svc-04", {})
        await completed("svc-04")  # its rollout is closed: the Run ends as ever


async def test_a_manual_gate_holds_the_next_wave_until_an_operator_promotes(make_rollout: Any) -> None:
    async with make_rollout(services(8)) as rollout:
        await start(rollout, maxRunning=10, waves=[3, "100%"], gate="manual")
        status = await rollout.reaches(RolloutPhase.WAITING_FOR_PROMOTION)
        assert status.gate_waiting and status.wave is not None and status.wave.completed == 3
        assert len(rollout.starts()) == 3, "nothing of the next wave starts before Promote"
        with pytest.raises(errors.RolloutConflict):
            await rollout.service.rollout_action(ANA, rollout.migration_id, "resume")
        await rollout.service.rollout_action(ANA, rollout.migration_id, "promote")
        assert (await rollout.reaches(RolloutPhase.COMPLETED)).counts.completed == 8
        assert rollout.actions() == [
            ("rollout_started", "ana"),
            ("rollout_promoted", "ana"),
            ("rollout_completed", None),
        ]


async def test_an_auto_gate_starts_the_next_wave_by_itself_after_the_soak(make_rollout: Any) -> None:
    async with make_rollout(services(6)) as rollout:
        await start(rollout, maxRunning=10, waves=[2, "100%"], gate="auto", soakMinutes=0.02)
        status = await rollout.reaches(RolloutPhase.COMPLETED)
        assert status.counts.completed == 6
        starts = rollout.starts()
        assert max(rollout.completed_at(c) for c in starts[:2]) < min(rollout.started_at(c) for c in starts[2:])
        assert ("rollout_promoted", "auto gate") in rollout.actions()


async def test_at_most_max_runs_per_owner_are_open_at_any_sample(make_rollout: Any) -> None:
    async with make_rollout(services(16, owners=4), delay=0.2) as rollout:
        async with rollout.sampling() as samples:
            await start(rollout, maxRunning=8, maxRunningPerGroup={"key": "owner", "max": 2})
            await rollout.reaches(RolloutPhase.COMPLETED, timeout=60)
        per_owner = [Counter(c.metadata["owner"] for c in sample) for sample in samples]
        assert max(n for counts in per_owner for n in [*counts.values(), 0]) == 2


async def test_a_dependent_candidate_starts_only_after_its_dependency_completed(make_rollout: Any) -> None:
    async with make_rollout(services(3)) as rollout:
        await start(rollout, maxRunning=3, dependsOn={"svc-00": ["svc-02"], "svc-01": ["svc-00"]})
        await rollout.reaches(RolloutPhase.COMPLETED)
        assert rollout.starts() == ["svc-02", "svc-00", "svc-01"]
        assert rollout.completed_at("svc-02") < rollout.started_at("svc-00")
        assert rollout.completed_at("svc-00") < rollout.started_at("svc-01")


async def test_the_breaker_pauses_after_three_failed_runs_and_a_bulk_retry_then_resume_finishes(
    make_rollout: Any,
) -> None:
    failing = {"on": True}
    async with make_rollout(services(10), outcome=lambda _: "failed" if failing["on"] else "completed") as rollout:
        await start(rollout, maxRunning=4, pauseAfterFailures=3)
        status = await rollout.reaches(RolloutPhase.PAUSED)
        assert "breaker" in (status.paused_reason or "")
        await eventually(lambda: rollout.migrator.answered >= 4, what="the four open Runs fail")
        assert len(rollout.starts()) == 4, "no more starts once the breaker tripped"

        failing["on"] = False
        where = CandidateFilter(step_name="bump", step_status="failed")
        operation = await rollout.service.bulk(ANA, rollout.migration_id, BulkRequest(action="retry", filter=where))
        assert sorted(o.candidate_id for o in operation.outcomes) == sorted(rollout.starts())

        async def done() -> Any:
            return await rollout.service.get_bulk(ANA, operation.id)

        finished = await eventually(done, 20, "the bulk retry", until=lambda op: op.state is BulkState.DONE)
        assert finished.counts == {"done": 4}
        await rollout.service.rollout_action(ANA, rollout.migration_id, "resume")
        assert (await rollout.reaches(RolloutPhase.COMPLETED)).counts.completed == 10
        actions = rollout.actions()
        assert actions[:3] == [("rollout_started", "ana"), ("rollout_paused", "breaker"), ("rollout_resumed", "ana")]


async def test_one_bulk_retry_of_a_failure_group_retries_exactly_that_groups_runs(make_rollout: Any) -> None:
    failing = {"on": True}

    def outcome(dispatch: Any) -> str:
        if not failing["on"]:
            return "completed"
        n = int(dispatch.candidate.id.rsplit("-", 1)[1])
        return (
            f"failed:HTTP 50{n} from https://git.example/{n} for '{dispatch.candidate.id}'"
            if n < 3
            else "failed:denied"
        )

    async with make_rollout(services(5), outcome=outcome) as rollout:
        await start(rollout, maxRunning=5)

        async def groups() -> Any:
            return (await rollout.service.failure_groups(ANA, rollout.migration_id)).groups

        found = await eventually(groups, 20, "two failure groups", until=lambda g: sum(x.count for x in g) == 5)
        assert [(g.message, g.count) for g in found] == [("HTTP <n> from <url> for <value>", 3), ("denied", 2)]
        failing["on"] = False
        where = CandidateFilter(failure_group=found[0].key)
        operation = await rollout.service.bulk(ANA, rollout.migration_id, BulkRequest(action="retry", filter=where))
        assert sorted(o.candidate_id for o in operation.outcomes) == ["svc-00", "svc-01", "svc-02"]

        async def done() -> Any:
            return await rollout.service.get_bulk(ANA, operation.id)

        finished = await eventually(done, 20, "the group's retry", until=lambda op: op.state is BulkState.DONE)
        assert finished.counts == {"done": 3}
        left = await eventually(groups, 20, "only the other group", until=lambda g: [x.count for x in g] == [2])
        assert left[0].message == "denied" and sorted(left[0].examples) == ["svc-03", "svc-04"]


async def test_pause_starts_nothing_new_while_open_runs_go_on_and_resume_continues(make_rollout: Any) -> None:
    async with make_rollout(services(6), delay=0.3) as rollout:
        await start(rollout, maxRunning=2)
        await eventually(lambda: len(rollout.starts()) == 2, what="two Runs start")
        await rollout.service.rollout_action(ANA, rollout.migration_id, "pause")
        status = await rollout.reaches(RolloutPhase.PAUSED)
        assert status.paused_reason == "paused by ana"
        await eventually(lambda: not rollout.running(), what="the open Runs finish while paused")
        assert len(rollout.starts()) == 2
        await rollout.service.rollout_action(ANA, rollout.migration_id, "resume")
        assert (await rollout.reaches(RolloutPhase.COMPLETED)).counts.completed == 6
        assert rollout.actions()[1:3] == [("rollout_paused", "ana"), ("rollout_resumed", "ana")]


async def test_the_policy_can_be_raised_while_it_runs(make_rollout: Any) -> None:
    async with make_rollout(services(8), delay=0.3) as rollout:
        async with rollout.sampling() as samples:
            await start(rollout, maxRunning=1)
            await eventually(lambda: len(rollout.starts()) >= 1)
            raised = RolloutPolicy(max_running=4)
            await rollout.service.set_rollout_policy(ANA, rollout.migration_id, raised)
            await eventually(lambda: len(rollout.running()) >= 3, what="the raised cap is used")
            await rollout.reaches(RolloutPhase.COMPLETED)
        assert max(len(s) for s in samples) <= 4
        assert ("rollout_policy_edited", "ana") in rollout.actions()
        with pytest.raises(errors.InvalidPolicy, match="cycle"):
            cyclic = RolloutPolicy(max_running=1, depends_on={"svc-00": ["svc-01"], "svc-01": ["svc-00"]})
            await rollout.service.set_rollout_policy(ANA, rollout.migration_id, cyclic)


async def test_a_worker_restarted_mid_rollout_keeps_the_cap_and_starts_nothing_twice(make_rollout: Any) -> None:
    async with make_rollout(services(12), delay=0.3) as rollout:
        async with rollout.sampling() as samples:
            await start(rollout, maxRunning=3)
            await eventually(lambda: len(rollout.starts()) >= 4, 30, "the rollout is under way")
            await rollout.stop_worker()
            await rollout.start_worker()
            status = await rollout.reaches(RolloutPhase.COMPLETED, timeout=60)
        assert status.counts.completed == 12
        assert max(len(s) for s in samples) <= 3
        assert sorted(rollout.starts()) == [f"svc-{i:02d}" for i in range(12)], "nothing started twice"


async def test_a_repeated_start_many_starts_nothing_twice_and_answers_each_refusal_in_order(
    make_rollout: Any,
) -> None:
    """Activities are at-least-once: a repeated attempt of the rollout's Starts adopts the Runs the first started."""
    async with make_rollout(services(6), delay=0.2) as rollout:
        activities = RolloutActivities(rollout.service, rollout.store, rollout.store, rollout.store)
        await rollout.service.set_rollout_policy(
            ANA, rollout.migration_id, RolloutPolicy.model_validate({"maxRunning": 2})
        )
        selection = RolloutStartRequest(candidate_ids=["svc-00", "svc-01", "svc-02"])
        await rollout.service.start_rollout(ANA, rollout.migration_id, selection)
        request = RolloutStartManyInput(
            migration_id=rollout.migration_id, candidate_ids=["svc-04", "nope", "svc-05"], actor="ana"
        )
        first, repeat = await activities.start_many(request), await activities.start_many(request)
        for outcome in (first, repeat):
            assert [r is None for r in outcome.refusals] == [True, False, True]
            assert "nope" in (outcome.refusals[1] or "")
        assert (await rollout.reaches(RolloutPhase.COMPLETED, timeout=60)).counts.completed == 3
        again = RolloutStartManyInput(migration_id=rollout.migration_id, candidate_ids=["svc-00"], actor="ana")
        assert (await activities.start_many(again)).refusals == [None], "a completed Run's Start is adopted"
        await eventually(lambda: len(rollout.running()) == 0, 30, "svc-04 and svc-05 to complete")
        assert sorted(rollout.starts()) == ["svc-00", "svc-01", "svc-02", "svc-04", "svc-05"], "none twice"


async def test_a_killed_app_resumes_its_rollout_with_the_cap_held_and_nothing_started_twice(
    temporal_address: str, tmp_path: Path
) -> None:
    """SIGKILL the `loom api` process mid-rollout; the restarted one carries on from the rollout's own state."""
    migrator = CallbackMigrator(delay=lambda _: 0.4)
    async with migrator.serving(), LiveLoom(temporal_address, tmp_path) as app:
        migrator.loom_url, migrator.token = app.url, app.credentials.migrator_token
        async with httpx.AsyncClient(base_url=app.url, timeout=30, auth=app.credentials.auth) as api:
            announce = {
                "id": "killed",
                "name": "Killed",
                "description": "A rollout survives a crash",
                "steps": [{"name": "bump", "migratorApp": "m"}],
                "candidates": [{"id": f"svc-{i:02d}", "kind": "service"} for i in range(16)],
                "migratorUrl": migrator.url,
            }
            assert (await api.post("/api/registry/announce", json=announce)).status_code == 200
            assert (await api.put("/api/migrations/killed/rollout", json={"maxRunning": 3})).status_code == 200
            peak = 0

            async def running() -> int:
                nonlocal peak
                with contextlib.suppress(httpx.HTTPError):
                    page = await api.get("/api/migrations/killed/candidates", params={"status": "running"})
                    peak = max(peak, int(page.headers["x-total-count"]))
                return peak

            assert (await api.post("/api/migrations/killed/rollout/start")).status_code == 202

            async def under_way() -> bool:
                await running()
                return len(migrator.dispatches) >= 4

            await eventually(under_way, 30, "the rollout is under way")
            app.kill()
            await app.start()

            async def status() -> dict[str, Any]:
                await running()
                return dict((await api.get("/api/migrations/killed/rollout")).json())

            # An activity the killed worker held is given to another once its heartbeats stop (10 s), not at its
            # start-to-close timeout (60 s): without heartbeats this took over 60 s after the restart.
            done = await eventually(status, 40, "the rollout completes", until=lambda s: s["state"] == "completed")
            params = {"type": "run_started", "limit": 1000}
            events = (await api.get("/api/migrations/killed/events", params=params)).json()["events"]
    assert done["counts"]["completed"] == 16
    assert peak <= 3
    assert sorted(e["candidateId"] for e in events) == [f"svc-{i:02d}" for i in range(16)], "each started once"


def failing_first(failures: dict[str, int]) -> Callable[[Any], str]:
    """Fail each named Candidate's Step on its first `n` dispatches (n < 0: always), then complete it."""
    sent: Counter[tuple[str, str]] = Counter()

    def outcome(dispatch: Any) -> str:
        key = (dispatch.candidate.id, dispatch.step_name)
        sent[key] += 1
        n = failures.get(dispatch.candidate.id, 0)
        if dispatch.step_name == "review":
            return "awaiting_review"
        return "failed:CI runner timed out" if n < 0 or sent[key] <= n else "completed"

    return outcome


def automatic(rollout: Rollout, event_type: EventType) -> list[dict[str, str]]:
    """The rollout's automatic actions of one kind in the event log, oldest first, as their metadata."""
    events = rollout.store.list_events(rollout.migration_id, event_type=event_type, limit=1000).events
    assert all(e.actor == "rollout" for e in events)
    return [dict(e.metadata) for e in sorted(events, key=lambda e: e.id or 0)]


async def test_a_step_that_fails_once_is_retried_by_the_rollout_and_the_run_completes_with_no_operator_action(
    make_rollout: Any,
) -> None:
    async with make_rollout(services(3), outcome=failing_first({"svc-01": 1})) as rollout:
        await start(rollout, maxRunning=3, autoRetry={"attempts": 1}, pauseAfterFailures=1)
        status = await rollout.reaches(RolloutPhase.COMPLETED)
        assert status.counts.completed == 3
        retried = automatic(rollout, EventType.ROLLOUT_STEP_RETRIED)
        assert retried == [{"candidate": "svc-01", "step": "bump", "attempt": "1", "policySetBy": "ana"}]
        run_retries = rollout.store.list_events(rollout.migration_id, event_type=EventType.STEP_RETRIED).events
        assert [(e.candidate_id, e.actor) for e in run_retries] == [("svc-01", "rollout")], "the Run's own Retry"
        assert [a for a in rollout.actions() if a[0] == "rollout_paused"] == [], "a retried failure trips no breaker"


async def test_a_step_failing_always_is_retried_exactly_attempts_times_then_counts_for_the_breaker(
    make_rollout: Any,
) -> None:
    async with make_rollout(services(3), outcome=failing_first({"svc-00": -1})) as rollout:
        await start(rollout, maxRunning=3, autoRetry={"attempts": 2}, pauseAfterFailures=1)
        status = await rollout.reaches(RolloutPhase.PAUSED)
        assert "svc-00" in (status.paused_reason or "")
        assert [d.candidate.id for d in rollout.migrator.dispatches].count("svc-00") == 3, "one dispatch, 2 retries"
        assert [r["attempt"] for r in automatic(rollout, EventType.ROLLOUT_STEP_RETRIED)] == ["1", "2"]
        assert ("rollout_paused", "breaker") in rollout.actions()


async def test_auto_approve_approves_the_reviews_of_wave_two_on_but_leaves_wave_one_to_the_operator(
    make_rollout: Any,
) -> None:
    steps = [*STEPS, StepDefinition(name="review", migrator_app="m", type="manual-review")]
    async with make_rollout(services(4), outcome=failing_first({}), steps=steps) as rollout:
        await start(
            rollout, maxRunning=4, waves=[1, "100%"], gate="auto", autoApprove={"step": "review", "fromWave": 2}
        )
        canary = await eventually(
            lambda: rollout.store.list_candidates(rollout.migration_id, CandidateFilter(), limit=10).candidates,
            20,
            "the canary awaits review",
            until=lambda cs: any(c.current_step_status == "awaiting_review" for c in cs),
        )
        first = next(c.id for c in canary if c.current_step_status == "awaiting_review")
        assert first == "svc-00", "wave 1 is the first in the start order"
        await rollout.service.review_step(ANA, rollout.migration_id, first, "review", approved=True)
        assert (await rollout.reaches(RolloutPhase.COMPLETED)).counts.completed == 4
        approvals = rollout.store.list_events(rollout.migration_id, event_type=EventType.REVIEW_APPROVED).events
        by = {e.candidate_id: e.actor for e in approvals}
        assert by == {first: "ana", **{c: "rollout" for c in by if c != first}} and len(by) == 4
        approved = automatic(rollout, EventType.ROLLOUT_STEP_APPROVED)
        assert sorted(a["candidate"] for a in approved) == sorted(c for c in by if c != first)
        assert {(a["wave"], a["policySetBy"]) for a in approved} == {("2", "ana")}


async def test_a_worker_restarted_mid_rollout_retries_each_failure_once_from_the_rollouts_own_state(
    make_rollout: Any,
) -> None:
    failing = {f"svc-{i:02d}": 1 for i in range(10)}
    async with make_rollout(services(10), delay=0.3, outcome=failing_first(failing)) as rollout:
        await start(rollout, maxRunning=4, autoRetry={"attempts": 3})
        await eventually(lambda: len(automatic(rollout, EventType.ROLLOUT_STEP_RETRIED)) >= 2, 30, "retries begin")
        await rollout.stop_worker()
        await rollout.start_worker()
        assert (await rollout.reaches(RolloutPhase.COMPLETED, timeout=60)).counts.completed == 10
        run_retries = rollout.store.list_events(rollout.migration_id, event_type=EventType.STEP_RETRIED).events
        assert sorted(e.candidate_id for e in run_retries) == sorted(failing), "each failure retried exactly once"
        assert {r["attempt"] for r in automatic(rollout, EventType.ROLLOUT_STEP_RETRIED)} == {"1"}
