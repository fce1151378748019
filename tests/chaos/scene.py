"""The chaos suite's stage: N Runs in flight through real processes, a Migrator that answers, and the final audit.

A fault test starts `Scene`, waits until the Runs are under way (`scene.under_way()`), breaks something, mends it,
waits for `scene.finished()` and calls `scene.audit()`, which checks what must hold whatever happened: every
callback Loom acknowledged applied once, each Step's result there once, every Run completed, nobody pressed Retry,
and a repeated dispatch carries the first one's id.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from temporalio.client import Client

from loom_backend.domain import DispatchStepRequest, StepStatus, StepStatusEvent
from loom_backend.store.sql_store import STEP_EVENTS, STEP_RESULTS, SqlStore
from loom_migrator.backoff import Backoff
from loom_migrator.client import LoomClient, LoomRejected
from tests.harness import FakeMigrator, LiveLoom, LoomProcess, eventually

RUNS = 12
STEPS = ("plan", "change", "verify")
MIGRATION = "chaos"
CANDIDATES = [f"svc-{i:02d}" for i in range(RUNS)]
# The SDK's own callback policy, faster and without a last attempt: a Migrator keeps telling Loom until it listens.
CALLBACK_BACKOFF = Backoff(initial=0.1, max_delay=1.0, max_attempts=None)


class Callbacks:
    """The Migrator's side: each dispatch it took is worked on briefly and reported completed through the SDK's client.

    Like the SDK, it acts once per dispatch id, and the client retries (network errors, 5xx, timeouts) until Loom
    takes the callback; `acknowledged` counts the callbacks Loom took, `refused` keeps any 4xx. A callback whose
    answer was lost (a timeout) may have been applied: its repeat then finds the Step done, or the Run ended (404).
    """

    def __init__(self, migrator: FakeMigrator, loom_url: str, token: str, work_seconds: float = 0.3) -> None:
        self.migrator = migrator
        self.client = LoomClient(loom_url, token=token, callback_backoff=CALLBACK_BACKOFF, timeout=10)
        self.work_seconds = work_seconds
        self.acknowledged: Counter[tuple[str, str]] = Counter()
        self.refused: dict[tuple[str, str], LoomRejected] = {}
        self._answered: set[str | None] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def pending(self) -> list[asyncio.Task[None]]:
        return list(self._tasks)

    async def run(self) -> None:
        while True:
            with self.migrator.lock:
                new = [d for d in self.migrator.dispatches if d.dispatch_id not in self._answered]
            for dispatch in new:
                self._answered.add(dispatch.dispatch_id)
                task = asyncio.create_task(self._answer(dispatch))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            await asyncio.sleep(0.05)

    async def _answer(self, dispatch: DispatchStepRequest) -> None:
        await asyncio.sleep(self.work_seconds)  # the Migrator doing the Step's work
        event = StepStatusEvent(
            step_name=dispatch.step_name, candidate_id=dispatch.candidate.id, status=StepStatus.COMPLETED
        )
        try:
            await self.client.post_event(dispatch.callback_id, event)
        except LoomRejected as exc:
            self.refused[(dispatch.candidate.id, dispatch.step_name)] = exc
            return
        self.acknowledged[(dispatch.candidate.id, dispatch.step_name)] += 1


@dataclass
class Scene:
    app: LiveLoom
    api: httpx.AsyncClient
    migrator: FakeMigrator
    callbacks: Callbacks
    database_url: str
    worker: LoomProcess | None = None

    async def start_runs(self) -> None:
        announce = {
            "id": MIGRATION,
            "name": "Chaos",
            "description": "Runs ride out faults",
            "steps": [{"name": s, "migratorApp": "m"} for s in STEPS],
            "candidates": [{"id": c, "kind": "service"} for c in CANDIDATES],
            "migratorUrl": self.migrator.url,
        }
        response = await self.api.post("/api/registry/announce", json=announce)
        assert response.status_code == 200, response.text
        for c in CANDIDATES:
            response = await self.api.post(f"/api/migrations/{MIGRATION}/candidates/{c}/start")
            assert response.status_code == 202, response.text

    async def under_way(self) -> None:
        """A third of the Steps are done and most are not: the fault hits Runs in flight."""
        total = RUNS * len(STEPS)
        done = await eventually(
            lambda: sum(self.callbacks.acknowledged.values()),
            30,
            "a third of the Steps done",
            until=lambda n: n >= RUNS,
        )
        assert done < total * 2 // 3, f"{done} of {total} Steps were done already: the fault would hit no Run"

    async def completed(self) -> int:
        """How many Runs the API shows completed; -1 while it does not answer."""
        try:
            page = await self.api.get(f"/api/migrations/{MIGRATION}/candidates", params={"status": "completed"})
        except httpx.HTTPError:
            return -1
        return int(page.headers["x-total-count"]) if page.status_code == 200 else -1

    async def finished(self, timeout: float = 45) -> None:
        """Every Run completed, and every callback the Migrator still sends (its answer lost) has its answer."""
        await eventually(self.completed, timeout, "every Run completes", interval=0.2, until=lambda n: n == RUNS)
        await eventually(lambda: not self.callbacks.pending(), 30, "the Migrator's callbacks answered", interval=0.2)

    async def steps(self, candidate: str) -> list[dict[str, Any]]:
        response = await self.api.get(f"/api/migrations/{MIGRATION}/candidates/{candidate}/steps")
        assert response.status_code == 200, response.text
        return list(response.json()["steps"])

    async def dispatch_failures(self) -> Counter[str]:
        """Why dispatch attempts failed, from the Runs' Temporal histories: the error type, or "timeout"."""
        client = await Client.connect(self.app.env["LOOM_TEMPORAL_ADDRESS"])
        failures: Counter[str] = Counter()
        for c in CANDIDATES:
            history = await client.get_workflow_handle(f"{MIGRATION}__{c}").fetch_history()
            for event in history.events:
                if event.HasField("activity_task_timed_out_event_attributes"):
                    failures["timeout"] += 1
                elif event.HasField("activity_task_failed_event_attributes"):
                    failures[event.activity_task_failed_event_attributes.failure.application_failure_info.type] += 1
        return failures

    def audit(self) -> None:
        """What must hold after any fault, read from the database Loom wrote and from the Migrator's side."""
        every_step = {(c, s) for c in CANDIDATES for s in STEPS}
        acknowledged, refused = self.callbacks.acknowledged, self.callbacks.refused
        assert all(e.status_code == 404 and "has ended" in e.reason for e in refused.values()), refused
        assert set(acknowledged) | set(refused) == every_step, "every callback was taken, or its Run had ended"
        assert set(acknowledged.values()) == {1}

        ids: dict[tuple[str, str], set[str | None]] = defaultdict(set)
        for dispatch in self.migrator.of(MIGRATION):
            ids[(dispatch.candidate.id, dispatch.step_name)].add(dispatch.dispatch_id)
        assert set(ids) == every_step
        assert all(len(same) == 1 and None not in same for same in ids.values()), f"a repeat kept its id: {ids}"

        store = SqlStore(self.database_url)
        try:
            with store.engine.connect() as connection:
                results = connection.execute(
                    select(STEP_RESULTS.c.candidate_id, STEP_RESULTS.c.step_name, STEP_RESULTS.c.status).where(
                        STEP_RESULTS.c.migration_id == MIGRATION
                    )
                ).all()
                events = connection.execute(
                    select(STEP_EVENTS.c.candidate_id, STEP_EVENTS.c.event_type, STEP_EVENTS.c.step_name).where(
                        STEP_EVENTS.c.migration_id == MIGRATION
                    )
                ).all()
        finally:
            store.engine.dispose()
        assert sorted((c, s) for c, s, _ in results) == sorted(every_step), "each Candidate has exactly its Steps"
        assert {status for _, _, status in results} == {"completed"}
        kinds = Counter((c, kind, step) for c, kind, step in events)
        assert not [k for k in kinds if k[1] in ("step_retried", "step_failed", "run_cancelled")], kinds
        for c in CANDIDATES:
            assert kinds[(c, "run_started", None)] == 1
            assert kinds[(c, "run_completed", None)] == 1
            for s in STEPS:
                assert kinds[(c, "step_dispatched", s)] == 1, f"{c}/{s} dispatched once"
                assert kinds[(c, "step_completed", s)] == 1, f"{c}/{s}: the acknowledged callback applied once"
        assert len(events) == RUNS * (2 + 2 * len(STEPS)), "no other event"
        repeats = len(self.migrator.of(MIGRATION)) - len(every_step)
        print(f"audit: {repeats} repeated dispatch(es), {len(refused)} callback(s) whose answer was lost applied")


def loom_env(app: LiveLoom, database_url: str, **settings: str) -> None:
    """Point the app (and whatever shares its env) at the database and add LOOM_* settings."""
    app.env.update(LOOM_DATABASE_URL=database_url, **{f"LOOM_{k.upper()}": v for k, v in settings.items()})


@contextlib.asynccontextmanager
async def scene(
    temporal_address: str,
    database_url: str,
    workdir: Path,
    *,
    separate_worker: bool = False,
    **settings: str,
) -> AsyncIterator[Scene]:
    """A fake Migrator, the Loom app (and, if asked, a `loom worker` beside an app without one), N Runs started."""
    async with FakeMigrator().serving() as migrator:
        app = LiveLoom(temporal_address, workdir)
        loom_env(app, database_url, **settings)
        worker = None
        if separate_worker:
            worker = LoomProcess(
                "worker",
                [sys.executable, "-m", "loom_backend.cli", "worker"],
                dict(app.env),
                workdir / "loom-worker.log",
            )
            app.env["LOOM_RUN_WORKER"] = "false"
        callbacks = Callbacks(migrator, app.url, app.credentials.migrator_token)
        answering = asyncio.create_task(callbacks.run())
        try:
            async with app, httpx.AsyncClient(base_url=app.url, timeout=30, auth=app.credentials.auth) as api:
                if worker is not None:
                    worker.start()
                stage = Scene(app, api, migrator, callbacks, database_url, worker)
                await stage.start_runs()
                yield stage
        finally:
            answering.cancel()
            for task in [answering, *callbacks.pending()]:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await callbacks.client.aclose()
            if worker is not None:
                worker.stop()
