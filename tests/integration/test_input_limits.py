"""What Loom takes in: no NUL characters anywhere, bounded Candidates, a Migrator URL without query or fragment.

On both databases: PostgreSQL cannot store a NUL, so a NUL that got past validation would be a 500 there.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from loom_backend.api import create_api
from loom_backend.auth import AccessControl
from loom_backend.domain import Role
from loom_backend.service import LoomService
from loom_backend.store.sql_store import SqlStore
from tests.credentials import Credentials
from tests.fakes import FakeEngine, FakeNotifier
from tests.integration.test_registry_api import announcement

RUN = "/api/migrations/base-image/candidates/svc-0"
NUL = "a\x00b"


@pytest.fixture
async def api(store: SqlStore, access: AccessControl, credentials: Credentials) -> AsyncIterator[httpx.AsyncClient]:
    service = LoomService.over(store, FakeEngine(), FakeNotifier(), access)
    transport = httpx.ASGITransport(app=create_api(lambda: service))
    async with httpx.AsyncClient(transport=transport, base_url="http://loom", auth=credentials.auth) as client:
        body = announcement()
        body["requiredInputs"] = [{"name": "targetImage", "label": "Target image"}]
        assert (await client.post("/api/registry/announce", json=body)).status_code == 200
        yield client


def with_candidate(**fields: Any) -> dict[str, Any]:
    body = announcement(n=1)
    body["candidates"][0].update(fields)
    return body


def refused(response: httpx.Response, field: str) -> None:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_request"
    assert any(d["field"].startswith(field) for d in body["details"]), body


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/registry/announce", announcement(name=NUL), "name"),
        ("POST", "/api/registry/announce", announcement(description=NUL), "description"),
        ("POST", "/api/registry/announce", announcement(overview=["ok", NUL]), "overview"),
        ("POST", "/api/registry/announce", announcement(migratorUrl="http://127.0.0.1:9000/\x00"), "migratorUrl"),
        ("POST", "/api/registry/announce", with_candidate(kind=NUL), "candidates.0.kind"),
        ("POST", "/api/registry/announce", with_candidate(metadata={NUL: "v"}), "candidates.0.metadata"),
        ("POST", "/api/registry/announce", with_candidate(metadata={"k": NUL}), "candidates.0.metadata"),
        ("POST", "/api/migrations/base-image/candidates", {"candidates": [{"id": "x", "kind": NUL}]}, "candidates"),
        ("POST", f"{RUN}/start", {"inputs": {"targetImage": NUL}}, "inputs"),
        ("PATCH", f"{RUN}/inputs", {"inputs": {"targetImage": NUL}}, "inputs"),
        ("POST", f"{RUN}/steps/review/approve", {"comment": NUL}, "comment"),
        ("POST", f"{RUN}/retry-step", {"stepName": NUL}, "stepName"),
        ("POST", "/api/migrations/base-image/dry-run", {"candidateId": NUL}, "candidateId"),
        (
            "POST",
            "/api/event/base-image__svc-0",
            {"stepName": "bump", "candidateId": "svc-0", "status": "completed", "metadata": {"prUrl": NUL}},
            "metadata",
        ),
        ("POST", "/api/auth/login", {"username": NUL, "password": "password!"}, "username"),
    ],
    ids=lambda v: v if isinstance(v, str) and not v.startswith("/") else None,
)
async def test_a_nul_character_in_any_string_of_a_body_is_422_naming_the_field(
    api: httpx.AsyncClient, method: str, path: str, body: Any, field: str
) -> None:
    refused(await api.request(method, path, json=body), field)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/migrations/base%00image", "path"),
        ("/api/migrations/base-image/candidates/svc%000/steps", "path"),
        ("/api/migrations/base-image/candidates?q=a%00b", "query"),
        ("/api/migrations/base-image/events?actor=%00", "query"),
    ],
)
async def test_a_nul_character_in_a_path_or_query_is_422(api: httpx.AsyncClient, path: str, field: str) -> None:
    refused(await api.get(path), field)


async def test_a_nul_character_in_the_sign_in_form_is_422(api: httpx.AsyncClient, access: AccessControl) -> None:
    access.add_user("alice", Role.OPERATOR, "correct horse battery")
    form = {"username": NUL, "password": "correct horse battery", "next": "/"}
    refused(await api.post("/api/auth/login-form", data=form, headers={"Authorization": ""}), "username")


@pytest.mark.parametrize(
    ("candidate", "field"),
    [
        ({"metadata": {f"k{i}": "v" for i in range(101)}}, "candidates.0.metadata"),
        ({"metadata": {"k" * 129: "v"}}, "candidates.0.metadata"),
        ({"metadata": {"k": "v" * 4097}}, "candidates.0.metadata"),
        ({"files": [{"name": f"g{i}"} for i in range(101)]}, "candidates.0.files"),
        ({"files": [{"name": "g", "files": [{"path": f"f{i}"} for i in range(1001)]}]}, "candidates.0.files"),
        (
            {"files": [{"name": f"g{g}", "files": [{"path": f"f{i}"} for i in range(300)]} for g in range(4)]},
            "candidates.0.files",
        ),
        ({"steps": [{"name": f"s{i}", "migratorApp": "demo"} for i in range(101)]}, "candidates.0.steps"),
    ],
    ids=["101-keys", "long-key", "long-value", "101-groups", "1001-files-in-a-group", "1200-files-in-all", "steps"],
)
async def test_a_candidate_over_its_limits_is_422_naming_the_field(
    api: httpx.AsyncClient, candidate: dict[str, Any], field: str
) -> None:
    refused(await api.post("/api/registry/announce", json=with_candidate(**candidate)), field)
    listed = await api.post(
        "/api/migrations/base-image/candidates", json={"candidates": [{"id": "x", "kind": "k", **candidate}]}
    )
    refused(listed, field.replace("candidates.0", "candidates.0"))


async def test_a_candidate_at_its_limits_is_taken(api: httpx.AsyncClient) -> None:
    candidate = {
        "metadata": {f"{i:0128d}": "v" * 4096 for i in range(100)},
        "files": [{"name": f"g{g}", "files": [{"path": f"f{i}"} for i in range(10)]} for g in range(100)],
    }
    assert (await api.post("/api/registry/announce", json=with_candidate(**candidate))).status_code == 200


async def test_inputs_that_would_push_a_candidates_metadata_over_its_limit_are_refused(
    api: httpx.AsyncClient,
) -> None:
    full = with_candidate(metadata={f"k{i}": "v" for i in range(100)})
    full["requiredInputs"] = [{"name": "targetImage", "label": "Target image"}]
    assert (await api.post("/api/registry/announce", json=full)).status_code == 200
    response = await api.post(f"{RUN}/start", json={"inputs": {"targetImage": "base:2"}})
    assert response.status_code == 400, response.text
    assert response.json()["details"][0]["field"] == "inputs"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9000/anything?x=", "http://127.0.0.1:9000?x=1", "http://127.0.0.1:9000/m#frag"]
)
async def test_a_migrator_url_with_a_query_or_a_fragment_is_refused_at_announce(
    api: httpx.AsyncClient, url: str
) -> None:
    response = await api.post("/api/registry/announce", json=announcement(migratorUrl=url))
    refused(response, "migratorUrl")
    assert "query" in response.json()["message"]
    assert (await api.get("/api/migrations/base-image")).json()["migratorUrl"] == "http://127.0.0.1:9000"
