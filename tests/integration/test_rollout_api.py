"""The rollout, Migration-level inputs and bulk routes over real HTTP semantics (ASGI) and a real database; the
engine is the hand-written fake (the rollout itself runs on the real Temporal in test_rollout.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from loom_backend.api import create_api
from loom_backend.auth import AccessControl
from loom_backend.domain import Principal, PrincipalKind, Role, TokenKind
from loom_backend.rollout import RolloutPhase, RolloutPolicy, RolloutStatus
from loom_backend.service import LoomService
from loom_backend.store.sql_store import SqlStore
from tests.credentials import Credentials
from tests.fakes import FakeEngine, FakeNotifier

M = "/api/migrations/base-image"


def announcement() -> dict:
    return {
        "id": "base-image",
        "name": "Upgrade base image",
        "description": "Every Dockerfile moves to the new base image",
        "requiredInputs": [{"name": "targetImage", "label": "Target image"}],
        "steps": [
            {"name": "bump", "migratorApp": "demo"},
            {"name": "review", "migratorApp": "demo"},
            {"name": "sign-off", "migratorApp": "demo", "type": "manual-review"},
        ],
        "candidates": [{"id": f"svc-{i}", "kind": "service", "metadata": {"owner": f"t{i % 2}"}} for i in range(4)],
        "migratorUrl": "http://127.0.0.1:9000",
    }


@dataclass
class Api:
    client: httpx.AsyncClient
    engine: FakeEngine
    viewer: dict[str, str]


@pytest.fixture
async def api(store: SqlStore, access: AccessControl, credentials: Credentials) -> AsyncIterator[Api]:
    engine = FakeEngine()
    service = LoomService.over(store, engine, FakeNotifier(), access)
    transport = httpx.ASGITransport(app=create_api(lambda: service))
    _, secret = access.create_token(TokenKind.OPERATOR, "vera", Role.VIEWER)
    async with httpx.AsyncClient(transport=transport, base_url="http://loom", auth=credentials.auth) as client:
        assert (await client.post("/api/registry/announce", json=announcement())).status_code == 200
        yield Api(client, engine, {"Authorization": f"Bearer {secret}"})


async def test_a_policy_is_saved_and_read_back_while_no_rollout_runs(api: Api) -> None:
    policy = {"maxRunning": 2, "waves": [1, "100%"], "gate": "manual", "maxRunningPerGroup": {"key": "owner", "max": 1}}
    response = await api.client.put(f"{M}/rollout", json=policy)
    assert response.status_code == 200, response.text
    assert response.json()["maxRunning"] == 2
    status = (await api.client.get(f"{M}/rollout")).json()
    assert status["state"] == "idle"
    assert status["policy"]["maxRunningPerGroup"] == {"key": "owner", "max": 1}


@pytest.mark.parametrize(
    ("policy", "says"),
    [
        ({"maxRunning": 0}, "maxRunning"),
        ({"maxRunning": 1, "order": "tier"}, "'tier'"),
        ({"maxRunning": 1, "dependsOn": {"svc-0": ["svc-1"], "svc-1": ["svc-0"]}}, "svc-0 -> svc-1 -> svc-0"),
        ({"maxRunning": 1, "dependsOn": {"svc-0": ["nope"]}}, "nope"),
        ({"maxRunning": 1, "waves": ["150%"]}, "waves"),
    ],
)
async def test_a_bad_policy_is_422_and_says_what_is_wrong(api: Api, policy: dict, says: str) -> None:
    response = await api.client.put(f"{M}/rollout", json=policy)
    assert response.status_code == 422
    assert says in response.json()["message"]
    assert (await api.client.get(f"{M}/rollout")).json()["policy"] is None, "nothing half-written"


@pytest.mark.parametrize(
    ("policy", "field", "says"),
    [
        ({"autoRetry": {"attempts": 0}}, "autoRetry.attempts", "greater than or equal to 1"),
        ({"autoRetry": {"attempts": 1, "afterMinutes": -1}}, "autoRetry.afterMinutes", "greater than or equal to 0"),
        ({"autoApprove": {"step": "sign-off", "fromWave": 0}}, "autoApprove.fromWave", "greater than or equal to 1"),
        ({"autoApprove": {"step": "deploy"}}, "autoApprove.step", "no Step named 'deploy'"),
        ({"autoApprove": {"step": "review"}}, "autoApprove.step", "'review' is not a manual-review Step"),
    ],
)
async def test_a_bad_auto_retry_or_auto_approve_is_422_naming_the_field(
    api: Api, policy: dict, field: str, says: str
) -> None:
    response = await api.client.put(f"{M}/rollout", json={"maxRunning": 1, **policy})
    assert response.status_code == 422, response.text
    body = response.json()
    assert says in body["message"]
    assert field in [d["field"] for d in body["details"]]


async def test_auto_retry_and_auto_approve_are_saved_read_back_and_edited_while_running(api: Api) -> None:
    policy = {"maxRunning": 2, "autoRetry": {"attempts": 2, "afterMinutes": 1.5}, "autoApprove": {"step": "sign-off"}}
    assert (await api.client.put(f"{M}/rollout", json=policy)).status_code == 200
    saved = (await api.client.get(f"{M}/rollout")).json()["policy"]
    assert saved["autoRetry"] == {"attempts": 2, "afterMinutes": 1.5}
    assert saved["autoApprove"] == {"step": "sign-off", "fromWave": 2}
    assert (await api.client.post(f"{M}/rollout/start")).status_code == 202
    edited = {**policy, "autoRetry": {"attempts": 1}, "autoApprove": {"step": "sign-off", "fromWave": 3}}
    assert (await api.client.put(f"{M}/rollout", json=edited)).status_code == 200
    assert api.engine.rollouts["base-image"].policy.auto_approve == RolloutPolicy.model_validate(edited).auto_approve


async def test_starting_needs_a_policy_then_starts_once_over_the_not_started_candidates(api: Api) -> None:
    assert (await api.client.post(f"{M}/rollout/start")).status_code == 409
    await api.client.put(f"{M}/rollout", json={"maxRunning": 2, "order": "owner"})
    response = await api.client.post(f"{M}/rollout/start", json={"filter": {"metadata": {"owner": "t1"}}})
    assert response.status_code == 202, response.text
    assert response.json()["counts"]["queued"] == 2
    assert api.engine.rollouts["base-image"].queue == ["svc-1", "svc-3"]
    assert (await api.client.get(f"{M}/rollout")).json()["state"] == "running"
    assert (await api.client.post(f"{M}/rollout/start")).status_code == 409


async def test_rollout_actions_are_202_and_409_without_a_rollout(api: Api) -> None:
    assert (await api.client.post(f"{M}/rollout/pause")).status_code == 409
    assert (await api.client.post(f"{M}/rollout/jump")).status_code == 422
    await api.client.put(f"{M}/rollout", json={"maxRunning": 2})
    await api.client.post(f"{M}/rollout/start", json={"candidateIds": ["svc-0"]})
    for action in ("pause", "resume", "promote", "stop"):
        assert (await api.client.post(f"{M}/rollout/{action}")).status_code == 202
    assert [a[2] for a in api.engine.actions if a[0] == "rollout"] == ["pause", "resume", "promote", "stop"]


async def test_viewers_read_the_rollout_and_may_not_change_it(api: Api) -> None:
    assert (await api.client.get(f"{M}/rollout", headers=api.viewer)).status_code == 200
    assert (await api.client.put(f"{M}/rollout", json={"maxRunning": 1}, headers=api.viewer)).status_code == 403
    assert (await api.client.post(f"{M}/rollout/pause", headers=api.viewer)).status_code == 403
    bulk = {"action": "start", "candidateIds": ["svc-0"]}
    assert (await api.client.post(f"{M}/bulk", json=bulk, headers=api.viewer)).status_code == 403


async def test_migration_inputs_fill_every_candidate_and_a_candidates_own_win(api: Api) -> None:
    response = await api.client.patch(f"{M}/inputs", json={"inputs": {"targetImage": "base:2"}})
    assert response.status_code == 200 and response.json() == {"inputs": {"targetImage": "base:2"}}
    assert (await api.client.patch(f"{M}/inputs", json={"inputs": {"other": "x"}})).status_code == 400
    assert (await api.client.post(f"{M}/candidates/svc-0/start")).status_code == 202
    own = {"inputs": {"targetImage": "base:3"}}
    assert (await api.client.post(f"{M}/candidates/svc-1/start", json=own)).status_code == 202
    started = {m.candidate.id: m.inputs for m in api.engine.started.values()}
    assert started == {"svc-0": {"targetImage": "base:2"}, "svc-1": {"targetImage": "base:3"}}


async def test_a_bulk_start_previews_its_impact_then_runs_durably_with_outcomes_to_read_back(api: Api) -> None:
    await api.client.post(f"{M}/candidates/svc-0/start", json={"inputs": {"targetImage": "base:2"}})
    await api.client.patch(f"{M}/candidates/svc-1/inputs", json={"inputs": {"targetImage": "base:2"}})
    body = {"action": "start", "filter": {"kind": "service"}, "dryRun": True}
    preview = await api.client.post(f"{M}/bulk", json=body)
    assert preview.status_code == 200, preview.text
    outcomes = {o["candidateId"]: (o["outcome"], o["message"]) for o in preview.json()["outcomes"]}
    assert outcomes == {
        "svc-0": ("skipped", "already running"),
        "svc-1": ("pending", None),
        "svc-2": ("skipped", "lacks input targetImage"),
        "svc-3": ("skipped", "lacks input targetImage"),
    }
    assert (await api.client.get(f"/api/bulk-operations/{preview.json()['id']}")).status_code == 404

    response = await api.client.post(f"{M}/bulk", json={**body, "dryRun": False})
    assert response.status_code == 202
    operation = response.json()
    assert api.engine.bulks == [(operation["id"], ["svc-1"])]
    read = (await api.client.get(f"/api/bulk-operations/{operation['id']}")).json()
    assert read["counts"] == {"pending": 1, "skipped": 3} and read["state"] == "running"


async def test_a_bulk_action_needs_a_selection(api: Api) -> None:
    response = await api.client.post(f"{M}/bulk", json={"action": "cancel"})
    assert response.status_code == 400
    assert (await api.client.post(f"{M}/bulk", json={"action": "explode", "candidateIds": []})).status_code == 422
    assert (await api.client.get("/api/bulk-operations/nope")).status_code == 404


async def test_a_rollout_whose_selection_leaves_out_a_dependency_not_yet_completed_is_refused(api: Api) -> None:
    await api.client.put(f"{M}/rollout", json={"maxRunning": 2, "dependsOn": {"svc-0": ["svc-1"]}})
    response = await api.client.post(f"{M}/rollout/start", json={"candidateIds": ["svc-0"]})
    assert response.status_code == 422
    assert "'svc-1'" in response.json()["message"]
    assert "base-image" not in api.engine.rollouts


async def test_needs_me_lists_rollouts_paused_or_waiting_for_promote_and_not_those_running(
    api: Api, store: SqlStore, access: AccessControl
) -> None:
    service = LoomService.over(store, api.engine, FakeNotifier(), access)
    viewer = Principal("vera", PrincipalKind.USER, Role.VIEWER)
    policy = RolloutPolicy(max_running=2)
    store.set_rollout_status("base-image", RolloutStatus(state=RolloutPhase.RUNNING, policy=policy))
    assert await service.rollouts_waiting(viewer) == []
    paused = RolloutStatus(state=RolloutPhase.PAUSED, policy=policy, paused_reason="3 Runs failed since the start")
    store.set_rollout_status("base-image", paused)
    (waiting,) = await service.rollouts_waiting(viewer)
    assert (waiting.migration_id, waiting.migration_name) == ("base-image", "Upgrade base image")
    assert waiting.status.paused_reason == "3 Runs failed since the start"
    gate = RolloutStatus(state=RolloutPhase.WAITING_FOR_PROMOTION, policy=policy, gate_waiting=True)
    store.set_rollout_status("base-image", gate)
    assert [w.status.state for w in await service.rollouts_waiting(viewer)] == [RolloutPhase.WAITING_FOR_PROMOTION]
    soaking = RolloutStatus(state=RolloutPhase.WAITING_FOR_PROMOTION, policy=policy, gate_waiting=False)
    store.set_rollout_status("base-image", soaking)  # an auto gate soaking: nobody needs to act
    assert await service.rollouts_waiting(viewer) == []
