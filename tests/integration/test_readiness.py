"""Readiness is honest: the database takes a write, Temporal answers, a worker polls; and what is down says so."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text

from loom_backend import errors
from loom_backend.api import create_api
from loom_backend.domain import Candidate, MigrationManifest, ReadinessCheck, StepDefinition
from loom_backend.execution.activities import RunActivities
from loom_backend.execution.dev_server import embedded_temporal, free_port
from loom_backend.execution.engine import TemporalEngine, connect
from loom_backend.execution.worker import build_worker
from loom_backend.migrator_client import HttpMigratorNotifier
from loom_backend.service import LoomService
from loom_backend.settings import Settings
from loom_backend.store.sql_store import DatabaseFileGone, SqlStore
from tests.fakes import FakeEngine, FakeNotifier
from tests.harness import eventually
from tests.integration.run_fixtures import *  # noqa: F403
from tests.integration.test_registry_api import announcement


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


# -- over HTTP ------------------------------------------------------------------------------------


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
async def api(store: SqlStore, access, credentials, fake_engine: FakeEngine) -> AsyncIterator[httpx.AsyncClient]:
    service = LoomService.over(store, fake_engine, FakeNotifier(), access)
    transport = httpx.ASGITransport(app=create_api(lambda: service))
    async with httpx.AsyncClient(transport=transport, base_url="http://loom", auth=credentials.auth) as client:
        yield client


async def test_readyz_answers_200_with_every_check_when_all_is_well(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/readyz", auth=None)
    assert response.status_code == 200
    assert response.json() == {
        "ready": True,
        "checks": [{"name": "database", "ok": True, "detail": ""}, {"name": "temporal", "ok": True, "detail": ""}],
    }
    assert (await api.get("/api/healthz")).json() == {"status": "ok"}


async def test_readyz_answers_503_naming_what_is_down(api: httpx.AsyncClient, fake_engine: FakeEngine) -> None:
    fake_engine.checks = [ReadinessCheck(name="temporal", ok=False, detail="Temporal does not answer: UNAVAILABLE")]
    response = await api.get("/api/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False
    assert {c["name"]: c["ok"] for c in body["checks"]} == {"database": True, "temporal": False}
    assert "does not answer" in body["checks"][1]["detail"]


async def test_readyz_sees_a_sqlite_file_removed_under_loom(tmp_path, access, credentials) -> None:
    path = tmp_path / "gone.db"
    store = SqlStore(f"sqlite:///{path}")
    store.upgrade_schema()
    service = LoomService.over(store, FakeEngine(), FakeNotifier(), access)
    transport = httpx.ASGITransport(app=create_api(lambda: service))
    async with httpx.AsyncClient(transport=transport, base_url="http://loom") as client:
        assert (await client.get("/api/readyz")).status_code == 200
        path.unlink()
        response = await client.get("/api/readyz")
    assert response.status_code == 503
    database = response.json()["checks"][0]
    assert database["name"] == "database" and not database["ok"] and "removed or replaced" in database["detail"]
    store.engine.dispose()


async def test_an_action_while_temporal_is_down_answers_503_with_retry_after(
    api: httpx.AsyncClient, fake_engine: FakeEngine
) -> None:
    assert (await api.post("/api/registry/announce", json=announcement())).status_code == 200
    fake_engine.fail_start = errors.ServiceUnavailable("Temporal is unreachable (UNAVAILABLE)", retry_after_seconds=7)
    response = await api.post(
        "/api/migrations/base-image/candidates/svc-0/start", json={"inputs": {"targetImage": "debian:13"}}
    )
    assert response.status_code == 503
    assert response.headers["retry-after"] == "7"
    assert response.json()["error"] == "ServiceUnavailable" and "Temporal is unreachable" in response.json()["message"]
    candidate = (await api.get("/api/migrations/base-image/candidates", params={"q": "svc-0"})).json()[0]
    assert candidate["status"] == "not_started"  # nothing half-written


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


async def test_readyz_reports_redis_when_the_board_shares_page_state_through_it(store, access) -> None:
    from loom_backend.probes import RedisProbe

    up, down = RedisProbe("redis://127.0.0.1:6379/13"), RedisProbe(f"redis://127.0.0.1:{free_port()}/0")
    for probe, code in ((up, 200), (down, 503)):
        service = LoomService.over(store, FakeEngine(), FakeNotifier(), access, probes=[probe])
        transport = httpx.ASGITransport(app=create_api(lambda service=service: service))
        async with httpx.AsyncClient(transport=transport, base_url="http://loom") as client:
            response = await client.get("/api/readyz")
        assert response.status_code == code
        redis = response.json()["checks"][-1]
        assert redis["name"] == "redis" and redis["ok"] == (code == 200)
        await probe.aclose()
    assert "Redis does not answer" in redis["detail"]
