"""Run ids cannot collide across Migrations: through the real HTTP API, a real Temporal server and SQLite.

`acme` with Candidate `svc__api` and `acme__svc` with Candidate `api` once shared the Run id `acme__svc__api`:
a refused Start on one wiped the other's Step results, and callbacks for one could land on the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from temporalio.client import Client
from temporalio.service import RPCError

from loom_backend.api import create_api
from loom_backend.auth import AccessControl
from loom_backend.domain import Candidate, MigrationAnnouncement, StepDefinition
from loom_backend.execution.activities import RunActivities
from loom_backend.execution.engine import TemporalEngine
from loom_backend.execution.worker import build_worker
from loom_backend.migrator_client import HttpMigratorNotifier
from loom_backend.service import LoomService
from loom_backend.store.auth_store import SqlAuthStore
from loom_backend.store.sql_store import SqlStore
from tests.credentials import new_credentials
from tests.integration.run_fixtures import *  # noqa: F403  (the fixtures)
from tests.integration.run_fixtures import TEST_DISPATCH, FakeMigrator, eventually

STEPS = [{"name": "bump", "migratorApp": "demo"}, {"name": "ship", "migratorApp": "demo"}]


@dataclass
class Loom:
    api: httpx.AsyncClient
    store: SqlStore
    engine: TemporalEngine
    migrator: FakeMigrator

    async def announce(self, migration_id: str, *candidate_ids: str) -> httpx.Response:
        body = {
            "id": migration_id,
            "name": migration_id,
            "description": "Run ids must not collide",
            "steps": STEPS,
            "candidates": [{"id": c, "kind": "service"} for c in candidate_ids],
            "migratorUrl": self.migrator.url,
        }
        return await self.api.post("/api/registry/announce", json=body)

    async def start(self, migration_id: str, candidate_id: str) -> httpx.Response:
        return await self.api.post(f"/api/migrations/{migration_id}/candidates/{candidate_id}/start", json={})

    async def callback(self, the_run: str, step: str, candidate_id: str, status: str, **meta: str) -> httpx.Response:
        body = {"stepName": step, "candidateId": candidate_id, "status": status, "metadata": meta}
        return await self.api.post(f"/api/event/{the_run}", json=body)

    async def steps(self, migration_id: str, candidate_id: str) -> dict[str, Any]:
        response = await self.api.get(f"/api/migrations/{migration_id}/candidates/{candidate_id}/steps")
        return {"code": response.status_code, **response.json()}

    async def step_statuses(self, migration_id: str, candidate_id: str) -> dict[str, tuple[str, str | None]]:
        body = await self.steps(migration_id, candidate_id)
        return {s["stepName"]: (s["status"], s["prUrl"]) for s in body.get("steps", [])}

    async def until_steps(self, migration_id: str, candidate_id: str, expected: dict[str, Any]) -> None:
        """Wait until the API reads these Step statuses for the Candidate: the read model follows the Run."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while (seen := await self.step_statuses(migration_id, candidate_id)) != expected:
            if loop.time() > deadline:
                raise AssertionError(f"{migration_id}/{candidate_id}: {seen} != {expected}")
            await asyncio.sleep(0.02)

    async def dispatched(self, migration_id: str, step: str) -> str:
        """Wait for the Step's dispatch; the callback id it carries, which the Migrator posts back to."""
        await eventually(lambda: bool(self.migrator.of(migration_id, step)))
        return self.migrator.of(migration_id, step)[0].callback_id


@pytest.fixture
async def loom(temporal_client: Client, migrator: FakeMigrator, sql_store: SqlStore) -> AsyncIterator[Loom]:
    access = AccessControl(SqlAuthStore(sql_store.engine))
    credentials = new_credentials().grant(access)
    notifier = HttpMigratorNotifier(timeout_seconds=2.0)
    task_queue = f"run-ids-{uuid.uuid4().hex}"
    engine = TemporalEngine(temporal_client, task_queue, dispatch=TEST_DISPATCH, cancel_timeout_seconds=10)
    service = LoomService.over(sql_store, engine, notifier, access)
    app = create_api(lambda: service)
    async with build_worker(temporal_client, task_queue, RunActivities(sql_store, notifier)):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://loom", auth=credentials.auth) as api:
            yield Loom(api, sql_store, engine, migrator)
        for the_run in {d.callback_id for d in migrator.dispatches}:  # the Runs a test left running
            if await engine.is_running(the_run):
                with contextlib.suppress(RPCError):  # it closed between the check and the terminate
                    await temporal_client.get_workflow_handle(the_run).terminate()
    await notifier.aclose()


@pytest.mark.parametrize("migration_id", ["acme__svc", "acme_", "a___b"])
async def test_a_migration_id_that_could_blur_a_run_id_is_refused_with_422_naming_the_id(
    loom: Loom, migration_id: str
) -> None:
    response = await loom.announce(migration_id, "api")
    assert response.status_code == 422
    (detail,) = response.json()["details"]
    assert detail["field"] == "id"
    assert "must not contain '__'" in detail["message"]
    assert (await loom.api.get("/api/migrations")).json() == {"migrations": []}


async def test_no_request_on_one_migration_reads_or_changes_the_runs_of_a_migration_named_alike(loom: Loom) -> None:
    """`acme` / `svc__api` and `acme_svc` / `api`: Run ids `acme__svc__api` and `acme_svc__api`."""
    assert (await loom.announce("acme", "svc__api")).status_code == 200
    assert (await loom.announce("acme_svc", "api")).status_code == 200
    assert (await loom.start("acme", "svc__api")).status_code == 202
    assert (await loom.start("acme_svc", "api")).status_code == 202
    acme_run = await loom.dispatched("acme", "bump")
    other_run = await loom.dispatched("acme_svc", "bump")
    assert (acme_run, other_run) == ("acme__svc__api", "acme_svc__api")

    assert (await loom.callback(acme_run, "bump", "svc__api", "open", prUrl="https://git/acme/1")).status_code == 202
    await loom.until_steps("acme", "svc__api", {"bump": ("open", "https://git/acme/1")})
    assert await loom.step_statuses("acme_svc", "api") == {"bump": ("in_progress", None)}

    # Callbacks naming the other Migration's Candidate, or a malformed Run id, are refused with 400.
    for the_run, candidate_id in [
        (acme_run, "api"),
        (other_run, "svc__api"),
        ("acme__svc__api", "svc"),
        ("acme", "acme"),
    ]:
        refused = await loom.callback(the_run, "bump", candidate_id, "completed")
        assert refused.status_code == 400, (the_run, candidate_id)
        assert refused.json()["details"][0]["field"] == "candidateId"

    # A refused Start on either leaves both Runs' Step results as they were.
    assert (await loom.start("acme_svc", "api")).status_code == 409
    assert (await loom.start("acme", "svc__api")).status_code == 409
    assert await loom.step_statuses("acme", "svc__api") == {"bump": ("open", "https://git/acme/1")}
    assert await loom.step_statuses("acme_svc", "api") == {"bump": ("in_progress", None)}

    # Each Migration's own callback moves only its own Run on.
    assert (await loom.callback(other_run, "bump", "api", "completed")).status_code == 202
    await loom.dispatched("acme_svc", "ship")
    assert await loom.step_statuses("acme", "svc__api") == {"bump": ("open", "https://git/acme/1")}
    assert not loom.migrator.of("acme", "ship")
    events = (await loom.api.get("/api/migrations/acme/events")).json()["events"]
    assert {e["runId"] for e in events} == {"acme__svc__api"}
    assert {e["candidateId"] for e in events} == {"svc__api"}


async def test_a_migration_stored_before_the_rule_can_neither_wipe_nor_take_over_the_run_it_collides_with(
    loom: Loom,
) -> None:
    """The issue's case exactly: `acme__svc` was announced before Migration ids were checked."""
    assert (await loom.announce("acme", "svc__api")).status_code == 200
    legacy = MigrationAnnouncement.model_construct(
        id="acme__svc",
        name="legacy",
        description="announced before the rule",
        overview=[],
        required_inputs=[],
        steps=[StepDefinition.model_validate(s) for s in STEPS],
        candidates=[Candidate(id="api", kind="service")],
        migrator_url=loom.migrator.url,
    )
    loom.store.announce(legacy, datetime.now(UTC))
    assert (await loom.start("acme", "svc__api")).status_code == 202
    acme_run = await loom.dispatched("acme", "bump")
    assert (await loom.callback(acme_run, "bump", "svc__api", "open", prUrl="https://git/acme/1")).status_code == 202
    await loom.until_steps("acme", "svc__api", {"bump": ("open", "https://git/acme/1")})

    refused = await loom.start("acme__svc", "api")
    assert refused.status_code == 400
    assert "announce it under a new id" in refused.json()["message"]
    assert await loom.step_statuses("acme", "svc__api") == {"bump": ("open", "https://git/acme/1")}
    assert (await loom.steps("acme__svc", "api"))["code"] == 404  # its Candidate is back to not_started
    assert (await loom.callback(acme_run, "bump", "api", "completed")).status_code == 400

    # Once acme's Run has finished, its Run id is free in Temporal: the legacy Migration still may not take it.
    assert (await loom.callback(acme_run, "bump", "svc__api", "merged")).status_code == 202
    ship_run = await loom.dispatched("acme", "ship")
    assert (await loom.callback(ship_run, "ship", "svc__api", "completed")).status_code == 202
    await loom.until_steps("acme", "svc__api", {"bump": ("merged", "https://git/acme/1"), "ship": ("completed", None)})
    assert (await loom.start("acme__svc", "api")).status_code == 400
    assert (await loom.steps("acme", "svc__api"))["status"] == "completed"
    assert len(loom.migrator.of("acme__svc")) == 0
