"""Durability: SIGKILL the app process while Runs wait on callbacks; the restarted app finishes them all.

Dispatch is at-least-once: a dispatch activity whose HTTP call went out just before the kill is retried by
Temporal, so a Migrator may see a Step twice. What must hold is that every repeat carries the first one's
dispatch id (so the SDK drops it) and that no Step result is recorded, nor any Step advanced, twice.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from loom_backend.store.sql_store import STEP_EVENTS, STEP_RESULTS, SqlStore
from tests.harness import FakeMigrator, LiveLoom, eventually

RUNS = 20
MIGRATION = "restart"
CANDIDATES = [f"svc-{i:02d}" for i in range(RUNS)]


@pytest.fixture
async def fake_migrator() -> AsyncIterator[FakeMigrator]:
    async with FakeMigrator().serving() as migrator:
        yield migrator


def runs_dispatched(migrator: FakeMigrator, step: str) -> set[str]:
    return {d.candidate.id for d in migrator.of(MIGRATION, step)}


async def test_killed_app_loses_nothing_and_finishes_every_run_after_restart(
    temporal_address: str, fake_migrator: FakeMigrator, tmp_path: Path
) -> None:
    async with (
        LiveLoom(temporal_address, tmp_path) as app,
        httpx.AsyncClient(base_url=app.url, timeout=30, auth=app.credentials.auth) as api,
    ):
        announce = {
            "id": MIGRATION,
            "name": "Restart",
            "description": "Runs survive a crash",
            "steps": [{"name": "bump", "migratorApp": "m"}, {"name": "cleanup", "migratorApp": "m"}],
            "candidates": [{"id": c, "kind": "service"} for c in CANDIDATES],
            "migratorUrl": fake_migrator.url,
        }
        assert (await api.post("/api/registry/announce", json=announce)).status_code == 200
        for c in CANDIDATES:
            assert (await api.post(f"/api/migrations/{MIGRATION}/candidates/{c}/start")).status_code == 202
        await eventually(lambda: len(runs_dispatched(fake_migrator, "bump")) == RUNS, 30, "every Run dispatches bump")

        app.kill()
        await app.start()

        for step in ("bump", "cleanup"):
            await eventually(
                lambda step=step: len(runs_dispatched(fake_migrator, step)) == RUNS, 30, f"every Run dispatches {step}"
            )
            for c in CANDIDATES:
                event = {"stepName": step, "candidateId": c, "status": "completed"}
                response = await api.post(f"/api/event/{MIGRATION}__{c}", json=event)
                assert response.status_code == 202, response.text

        async def completed() -> int:
            page = await api.get(f"/api/migrations/{MIGRATION}/candidates", params={"status": "completed"})
            return int(page.headers["X-Total-Count"])

        await eventually(completed, 30, "every Run completes", until=lambda total: total == RUNS)

    ids: dict[tuple[str, str], set[str | None]] = defaultdict(set)
    for dispatch in fake_migrator.of(MIGRATION):
        ids[(dispatch.candidate.id, dispatch.step_name)].add(dispatch.dispatch_id)
    assert len(ids) == 2 * RUNS
    assert all(len(same) == 1 and None not in same for same in ids.values()), "a repeated dispatch keeps its id"
    assert len({i for same in ids.values() for i in same}) == 2 * RUNS, "each Step attempt has an id of its own"

    store = SqlStore(f"sqlite:///{tmp_path / 'loom.db'}")
    with store.engine.connect() as connection:
        results = connection.execute(
            select(STEP_RESULTS.c.status, func.count())
            .where(STEP_RESULTS.c.migration_id == MIGRATION)
            .group_by(STEP_RESULTS.c.status)
        ).all()
        events = connection.execute(
            select(STEP_EVENTS.c.run_id, STEP_EVENTS.c.event_type, STEP_EVENTS.c.step_name).where(
                STEP_EVENTS.c.migration_id == MIGRATION
            )
        ).all()
    store.engine.dispose()
    assert dict(results) == {"completed": 2 * RUNS}, "one result per Step, never recorded twice"
    per_run = Counter((run, kind, step) for run, kind, step in events)
    for c in CANDIDATES:
        run = f"{MIGRATION}__{c}"
        assert per_run[(run, "run_started", None)] == 1
        assert per_run[(run, "run_completed", None)] == 1
        for step in ("bump", "cleanup"):
            assert per_run[(run, "step_dispatched", step)] == 1
            assert per_run[(run, "step_completed", step)] == 1, "no Step advanced twice"
    assert len(events) == RUNS * 6
