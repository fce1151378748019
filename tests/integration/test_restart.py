"""Durability: SIGKILL the app process while Runs wait on callbacks; the restarted app finishes them all."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.routing import Route

from loom_backend.execution.dev_server import free_port
from loom_backend.store.sql_store import STEP_EVENTS, STEP_RESULTS, SqlStore
from tests.credentials import new_credentials
from tests.integration.run_fixtures import FakeMigrator, serve

RUNS = 20
ROOT = Path(__file__).resolve().parents[2]


async def until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


class App:
    """`loom api` in its own process, so it can be killed like a crashed server."""

    def __init__(self, env: dict[str, str], port: int) -> None:
        self.env, self.port, self.process = env, port, None
        self.url = f"http://127.0.0.1:{port}"

    async def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "loom_backend.cli", "api", "--port", str(self.port)], cwd=ROOT, env=self.env
        )
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                try:
                    if (await client.get(f"{self.url}/api/healthz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
        raise AssertionError("the app did not come up")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)


@pytest.fixture
async def fake_migrator() -> AsyncIterator[FakeMigrator]:
    migrator = FakeMigrator()
    port = free_port()

    async def dispatch_step(request):  # type: ignore[no-untyped-def]
        return await migrator.dispatch_step(request)

    migrator.url = f"http://127.0.0.1:{port}"
    async with serve(Starlette(routes=[Route("/dispatch-step", dispatch_step, methods=["POST"])]), port):
        yield migrator


async def test_killed_app_loses_nothing_and_finishes_every_run_after_restart(
    temporal_address: str, fake_migrator: FakeMigrator, tmp_path: Path
) -> None:
    credentials = new_credentials()
    env = {
        **os.environ,
        "LOOM_BOOTSTRAP_TOKENS": credentials.env,
        "LOOM_TEMPORAL_ADDRESS": temporal_address,
        "LOOM_DATA_DIR": str(tmp_path),
        "LOOM_TEMPORAL_TASK_QUEUE": f"restart-{uuid.uuid4().hex[:8]}",
        "LOOM_DEMO": "false",
    }
    app = App(env, free_port())
    migration = "restart"
    candidates = [f"svc-{i:02d}" for i in range(RUNS)]
    await app.start()
    try:
        async with httpx.AsyncClient(base_url=app.url, timeout=30, auth=credentials.auth) as api:
            announce = {
                "id": migration,
                "name": "Restart",
                "description": "Runs survive a crash",
                "steps": [{"name": "bump", "migratorApp": "m"}, {"name": "cleanup", "migratorApp": "m"}],
                "candidates": [{"id": c, "kind": "service"} for c in candidates],
                "migratorUrl": fake_migrator.url,
            }
            assert (await api.post("/api/registry/announce", json=announce)).status_code == 200
            for c in candidates:
                assert (await api.post(f"/api/migrations/{migration}/candidates/{c}/start")).status_code == 202
            await until(lambda: len(fake_migrator.of(migration, "bump")) == RUNS)

            app.kill()
            await app.start()

            for step in ("bump", "cleanup"):
                if step == "cleanup":
                    await until(lambda: len(fake_migrator.of(migration, "cleanup")) == RUNS)
                for c in candidates:
                    event = {"stepName": step, "candidateId": c, "status": "completed"}
                    response = await api.post(f"/api/event/{migration}__{c}", json=event)
                    assert response.status_code == 202, response.text

            async def all_completed() -> bool:
                page = (await api.get(f"/api/migrations/{migration}/candidates", params={"status": "completed"})).json()
                return page["total"] == RUNS

            for _ in range(300):
                if await all_completed():
                    break
                await asyncio.sleep(0.1)
            assert await all_completed()
    finally:
        app.stop()

    assert len(fake_migrator.of(migration, "bump")) == RUNS, "no Step is dispatched twice"
    store = SqlStore(f"sqlite:///{tmp_path / 'loom.db'}")
    with store.engine.connect() as connection:
        results = connection.execute(
            select(STEP_RESULTS.c.status, func.count())
            .where(STEP_RESULTS.c.migration_id == migration)
            .group_by(STEP_RESULTS.c.status)
        ).all()
        events = connection.execute(
            select(STEP_EVENTS.c.run_id, STEP_EVENTS.c.event_type, STEP_EVENTS.c.step_name).where(
                STEP_EVENTS.c.migration_id == migration
            )
        ).all()
    assert dict(results) == {"completed": 2 * RUNS}
    per_run = Counter((run, kind, step) for run, kind, step in events)
    for c in candidates:
        run = f"{migration}__{c}"
        assert per_run[(run, "run_started", None)] == 1
        assert per_run[(run, "run_completed", None)] == 1
        for step in ("bump", "cleanup"):
            assert per_run[(run, "step_dispatched", step)] == 1
            assert per_run[(run, "step_completed", step)] == 1
    assert len(events) == RUNS * 6
