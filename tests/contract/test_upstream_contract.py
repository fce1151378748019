"""Loom's real answers, held against upstream Loom's wire shapes for every route upstream defines.

Through the real API (create_api) over a real SQLite store, a real Temporal server for the Runs and the real
HTTP fake Migrator; `tests/contract/upstream.py` holds our own models of upstream's shapes.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.client import Client
from temporalio.service import RPCError

from loom_backend.api import ALL_METHODS, create_api
from loom_backend.auth import AccessControl, ProvisionedToken, Role, TokenKind
from loom_backend.execution.activities import RunActivities
from loom_backend.execution.engine import TemporalEngine
from loom_backend.execution.worker import build_worker
from loom_backend.migrator_client import HttpMigratorNotifier
from loom_backend.service import LoomService
from loom_backend.store.auth_store import SqlAuthStore
from loom_backend.store.sql_store import SqlStore
from tests.contract import upstream
from tests.credentials import Credentials, new_credentials
from tests.integration.run_fixtures import *  # noqa: F403  (the fixtures)
from tests.integration.run_fixtures import TEST_DISPATCH, FakeMigrator, eventually

STEPS = [
    {"name": "bump", "migratorApp": "chart-migrator", "description": "Bump the chart", "config": {"chart": "app"}},
    {"name": "review", "migratorApp": "chart-migrator", "type": "manual-review", "instructions": "Check {id}"},
]
CANDIDATES = [
    {
        "id": "billing-api",
        "kind": "application",
        "metadata": {"team": "payments"},
        "files": [{"name": "prod", "repo": "gitops", "files": [{"path": "apps/billing/values.yaml", "url": "u"}]}],
    },
    {"id": "search", "kind": "application", "steps": [{"name": "bump", "migratorApp": "chart-migrator"}]},
    {"id": "ledger", "kind": "kafka-topic"},
]


@dataclass
class Loom:
    api: httpx.AsyncClient
    migrator: FakeMigrator
    credentials: Credentials
    tokens: dict[Role, str]
    mid: str = ""  # a Migration id of its own per test: Run ids on the shared Temporal server stay apart

    def as_role(self, role: Role) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    async def announce(self) -> None:
        body = {
            "id": self.mid,
            "name": "Chart upgrade",
            "description": "Every app moves to the new chart",
            "requiredInputs": [{"name": "repoName", "label": "Repository"}],
            "steps": STEPS,
            "candidates": CANDIDATES,
            "migratorUrl": self.migrator.url,
        }
        response = await self.api.post("/api/registry/announce", json=body)
        assert response.status_code == 200, response.text

    async def start(self, candidate_id: str, inputs: dict[str, str] | None = None) -> httpx.Response:
        path = f"/api/migrations/{self.mid}/candidates/{candidate_id}/start"
        response = await self.api.post(path, json={"inputs": inputs or {"repoName": candidate_id}})
        return response

    async def steps(self, candidate_id: str) -> httpx.Response:
        return await self.api.get(f"/api/migrations/{self.mid}/candidates/{candidate_id}/steps")

    async def step_status(self, candidate_id: str, step: str, status: str) -> dict[str, Any]:
        async def seen() -> dict[str, Any] | None:
            body = (await self.steps(candidate_id)).json()
            found = [s for s in body.get("steps", []) if s["stepName"] == step and s["status"] == status]
            return body if found else None

        body: dict[str, Any] = await eventually(seen, 10, f"Step {step!r} of {candidate_id} to be {status}")
        return body

    async def dispatched(self, candidate_id: str, step: str) -> str:
        await eventually(lambda: bool(self.migrator.of(self.mid, step, candidate_id)), 10, f"{step} dispatched")
        return self.migrator.of(self.mid, step, candidate_id)[0].callback_id


@pytest.fixture
async def loom(temporal_client: Client, migrator: FakeMigrator, sql_store: SqlStore) -> AsyncIterator[Loom]:
    access = AccessControl(SqlAuthStore(sql_store.engine))
    credentials = new_credentials().grant(access)
    tokens = {role: f"loom_o_{role.value}_{uuid.uuid4().hex}" for role in (Role.VIEWER, Role.OPERATOR)}
    for role, token in tokens.items():
        access.provision_token(ProvisionedToken(TokenKind.OPERATOR, f"{role.value}-one", role, token))
    notifier = HttpMigratorNotifier(timeout_seconds=2.0)
    task_queue = f"contract-{uuid.uuid4().hex}"
    engine = TemporalEngine(temporal_client, task_queue, dispatch=TEST_DISPATCH, cancel_timeout_seconds=10)
    service = LoomService.over(sql_store, engine, notifier, access)
    async with build_worker(temporal_client, task_queue, RunActivities(sql_store, notifier)):
        transport = httpx.ASGITransport(app=create_api(lambda: service))
        async with httpx.AsyncClient(transport=transport, base_url="http://loom", auth=credentials.auth) as api:
            loom = Loom(api, migrator, credentials, tokens, f"chart-upgrade-{uuid.uuid4().hex[:8]}")
            await loom.announce()
            yield loom
        for the_run in {d.callback_id for d in migrator.dispatches}:  # the Runs a test left running
            if await engine.is_running(the_run):
                with contextlib.suppress(RPCError):
                    await temporal_client.get_workflow_handle(the_run).terminate()
    await notifier.aclose()


async def test_list_and_get_migration_match_upstreams_migration_with_nothing_null(loom: Loom) -> None:
    listing = await loom.api.get("/api/migrations")
    assert listing.status_code == 200
    (migration,) = upstream.ListMigrationsResponse.model_validate_json(listing.content, strict=True).migrations
    one = await loom.api.get(f"/api/migrations/{loom.mid}")
    assert one.status_code == 200
    got = upstream.Migration.model_validate_json(one.content, strict=True)
    assert got.id == migration.id == loom.mid
    assert [c.id for c in got.candidates] == ["billing-api", "search", "ledger"]
    assert "steps" not in one.json()["candidates"][0], "a Candidate without Steps of its own has none, not null"
    assert (await loom.api.get("/api/migrations/nope")).status_code == 404


async def test_candidates_answer_a_json_array_of_upstreams_candidate(loom: Loom) -> None:
    response = await loom.api.get(f"/api/migrations/{loom.mid}/candidates")
    assert response.status_code == 200
    listed = upstream.CandidateList.validate_json(response.content, strict=True)
    assert [(c.id, c.status) for c in listed] == [(c["id"], "not_started") for c in CANDIDATES]


async def test_submitting_candidates_answers_204_and_404_for_an_unknown_migration(loom: Loom) -> None:
    body = {"candidates": [*CANDIDATES, {"id": "new-one", "kind": "application"}]}
    assert (await loom.api.post(f"/api/migrations/{loom.mid}/candidates", json=body)).status_code == 204
    assert (await loom.api.post("/api/migrations/nope/candidates", json=body)).status_code == 404


async def test_start_answers_202_then_409_and_404_and_its_inputs_join_the_candidates_metadata(loom: Loom) -> None:
    started = await loom.start("billing-api", {"repoName": "billing"})
    assert started.status_code == 202
    assert (await loom.start("billing-api")).status_code == 409
    assert (await loom.start("nope")).status_code == 404
    (billing,) = [
        c
        for c in upstream.CandidateList.validate_json(
            (await loom.api.get(f"/api/migrations/{loom.mid}/candidates")).content, strict=True
        )
        if c.id == "billing-api"
    ]
    assert billing.metadata == {"team": "payments", "repoName": "billing"}
    assert billing.status == upstream.CandidateStatus.RUNNING


async def test_steps_match_upstreams_step_state_with_the_candidate_and_404_before_a_run(loom: Loom) -> None:
    assert (await loom.steps("ledger")).status_code == 404
    await loom.start("billing-api")
    the_run = await loom.dispatched("billing-api", "bump")
    event = {"stepName": "bump", "candidateId": "billing-api", "success": True, "status": "completed"}
    answered = await loom.api.post(f"/api/event/{the_run}", json=event)
    assert answered.status_code == 202
    assert upstream.EventResponse.model_validate_json(answered.content, strict=True).status
    body = await loom.step_status("billing-api", "review", "in_progress")
    steps = upstream.CandidateStepsResponse.model_validate_json((await loom.steps("billing-api")).content, strict=True)
    assert steps.status == "running"
    assert [(s.stepName, s.success, s.candidate.id) for s in steps.steps] == [
        ("bump", True, "billing-api"),
        ("review", False, "billing-api"),
    ]
    assert body["steps"][0]["candidateId"] == "billing-api", "Loom's own field stays"


async def test_an_operator_marks_a_step_by_hand_through_the_event_route_and_a_viewer_may_not(loom: Loom) -> None:
    await loom.start("search")
    the_run = await loom.dispatched("search", "bump")
    event = {"stepName": "bump", "candidateId": "search", "status": "failed", "metadata": {"error": "by hand"}}
    refused = await loom.api.post(f"/api/event/{the_run}", json=event, headers=loom.as_role(Role.VIEWER))
    assert refused.status_code == 403
    assert "viewer" in refused.json()["message"]
    accepted = await loom.api.post(f"/api/event/{the_run}", json=event, headers=loom.as_role(Role.OPERATOR))
    assert accepted.status_code == 202, accepted.text
    await loom.step_status("search", "bump", "failed")
    page = (await loom.api.get(f"/api/migrations/{loom.mid}/events", params={"candidateId": "search"})).json()
    (completed,) = [e for e in page["events"] if e["eventType"] == "step_completed"]
    assert (completed["actor"], completed["status"]) == ("operator-one", "failed")


async def test_cancel_answers_204_then_409_and_404_for_an_unknown_candidate(loom: Loom) -> None:
    await loom.start("ledger")
    await loom.dispatched("ledger", "bump")
    cancel = f"/api/migrations/{loom.mid}/candidates/ledger/cancel"
    assert (await loom.api.post(cancel)).status_code == 204
    assert (await loom.api.post(cancel)).status_code == 409
    assert (await loom.api.post(f"/api/migrations/{loom.mid}/candidates/nope/cancel")).status_code == 404


async def test_loom_dispatches_what_upstreams_migrators_take(loom: Loom) -> None:
    await loom.start("billing-api")
    await loom.dispatched("billing-api", "bump")
    (dispatch,) = loom.migrator.of(loom.mid, "bump", "billing-api")
    sent = upstream.DispatchStepRequest.model_validate_json(dispatch.model_dump_json(), strict=True)
    assert (sent.stepName, sent.candidate.metadata) == ("bump", {"team": "payments", "repoName": "billing-api"})


async def test_a_dry_run_of_a_whole_candidate_matches_upstreams_dry_run_result(loom: Loom) -> None:
    asked: list[bytes] = []

    async def dry_run(request: Request) -> Response:
        asked.append(await request.body())
        diff = {"path": "values.yaml", "repo": "gitops", "before": "a", "after": "b", "status": "modified"}
        return JSONResponse(
            {"steps": [{"stepName": "bump", "files": [diff]}, {"stepName": "review", "skipped": True, "files": []}]}
        )

    loom.migrator.dry_run = dry_run  # type: ignore[method-assign]
    try:
        body = {"candidate": {"id": "preview-me", "kind": "application", "metadata": {"repoName": "x"}}}
        response = await loom.api.post(f"/api/migrations/{loom.mid}/dry-run", json=body)
    finally:
        del loom.migrator.dry_run
    assert response.status_code == 200, response.text
    result = upstream.DryRunResult.model_validate_json(response.content, strict=True)
    assert [(s.stepName, s.skipped) for s in result.steps] == [("bump", False), ("review", True)]
    upstream.DryRunRequest.model_validate_json(asked[0], strict=True)
    assert (await loom.api.post("/api/migrations/nope/dry-run", json=body)).status_code == 404


async def test_an_unknown_api_route_answers_json_404_and_a_wrong_method_405(loom: Loom) -> None:
    missing = await loom.api.get(f"/api/migrations/{loom.mid}/nope")
    assert (missing.status_code, missing.headers["content-type"]) == (404, "application/json")
    assert "No such route" in missing.json()["message"]
    wrong = await loom.api.delete("/api/migrations")
    assert (wrong.status_code, wrong.headers["allow"]) == (405, "GET")


async def test_with_pages_mounted_behind_the_api_as_reflex_does_an_unknown_api_route_still_answers_json_404() -> None:
    async def page(request: Request) -> Response:
        return Response("<html>the board's 404 page</html>", status_code=404, media_type="text/html")

    app = create_api(lambda: None)  # type: ignore[arg-type, return-value]  (no route reaches the service)
    app.mount("", Starlette(routes=[Route("/{path:path}", page, methods=ALL_METHODS)]))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://loom") as client:
        missing = await client.get("/api/migrations/x/nope")
        assert (missing.status_code, missing.headers["content-type"]) == (404, "application/json")
        wrong = await client.delete("/api/migrations")
        assert (wrong.status_code, wrong.headers["allow"]) == (405, "GET")
        assert (await client.get("/some/page")).headers["content-type"].startswith("text/html")
