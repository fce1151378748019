"""Readiness is honest: the database takes a write, Temporal answers, a worker polls; and what is down says so."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from sqlalchemy import text

from loom_backend import errors
from loom_backend.domain import Candidate, MigrationManifest, StepDefinition
from loom_backend.execution.activities import RunActivities
from loom_backend.execution.dev_server import embedded_temporal, free_port
from loom_backend.execution.engine import TemporalEngine, connect
from loom_backend.execution.worker import build_worker
from loom_backend.migrator_client import HttpMigratorNotifier
from loom_backend.settings import Settings
from loom_backend.store.sql_store import DatabaseFileGone, SqlStore
from tests.harness import eventually
from tests.integration.run_fixtures import *  # noqa: F403


def _manifest() -> MigrationManifest:
    return MigrationManifest(
        migration_id="ready",
        migrator_url="http://127.0.0.1:9",
        candidate=Candidate(id="svc", kind="service"),
        steps=[StepDefinition(name="s", migrator_app="m")],
    )


def test_the_database_check_commits_a_write(store) -> None:
    store.check_writable()
    store.check_writable()
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM health")).scalar() == 1


def test_a_sqlite_file_removed_under_a_running_loom_is_noticed_and_not_written_past(tmp_path) -> None:
    path = tmp_path / "loom.db"
    store = SqlStore(f"sqlite:///{path}")
    store.upgrade_schema()
    store.check_writable()
    path.unlink()
    with pytest.raises(DatabaseFileGone, match="removed or replaced"):
        store.check_writable()
    with pytest.raises(DatabaseFileGone):
        store.apply_run_changes("ready__svc", "ready", "svc", [])
    store.engine.dispose()


async def test_temporal_readiness_names_a_missing_worker_and_sees_one_polling(temporal_client, sql_store) -> None:
    queue = f"ready-{uuid.uuid4().hex}"
    engine = TemporalEngine(temporal_client, queue)
    checks = {c.name: c for c in await engine.readiness()}
    assert checks["temporal"].ok and checks["temporal_namespace"].ok
    assert not checks["worker"].ok and "no worker polls" in checks["worker"].detail
    notifier = HttpMigratorNotifier()
    async with build_worker(temporal_client, queue, RunActivities(sql_store, notifier)):

        async def polled() -> bool:
            return {c.name: c for c in await engine.readiness()}["worker"].ok

        deadline = time.monotonic() + 30
        while not await polled():
            assert time.monotonic() < deadline, "the worker never showed as polling"
            await asyncio.sleep(0.2)
    await notifier.aclose()


async def test_while_temporal_is_down_runs_answer_service_unavailable_at_once(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path)
    async with embedded_temporal(settings, port=free_port(), data_dir=tmp_path) as address:
        client = await connect(settings, address)
        engine = TemporalEngine(client, f"down-{uuid.uuid4().hex}")
        watching = asyncio.create_task(engine.watch())
        assert {c.name: c.ok for c in await engine.readiness()}["temporal"]
    # The server is stopped now (and nothing restarts it: the context ended).
    try:
        with pytest.raises(errors.ServiceUnavailable, match="Temporal is unreachable"):
            await engine.start_run(_manifest(), "ann")
        began = time.monotonic()
        with pytest.raises(errors.ServiceUnavailable):
            await engine.retry_step("ready__svc", "s", "ann")
        assert time.monotonic() - began < 1.0  # known to be down: no waiting on the client's retries
        checks = await engine.readiness()
        assert [(c.name, c.ok) for c in checks] == [("temporal", False)]
    finally:
        watching.cancel()


async def test_once_temporal_is_back_calls_go_through_again_even_without_a_probe(tmp_path) -> None:
    """Without a `watch` probe running (`loom api` and `loom worker` start none), one failure must not refuse all."""
    settings, port = Settings(data_dir=tmp_path), free_port()
    async with embedded_temporal(settings, port=port, data_dir=tmp_path) as address:
        engine = TemporalEngine(await connect(settings, address), f"back-{uuid.uuid4().hex}")
    with pytest.raises(errors.ServiceUnavailable):
        await engine.is_running("ready__svc")
    async with embedded_temporal(settings, port=port, data_dir=tmp_path):

        async def answers() -> bool:
            try:
                return not await engine.is_running("ready__svc")
            except errors.ServiceUnavailable:
                return False

        await eventually(answers, 20, "the engine to reach Temporal again", interval=0.2)
