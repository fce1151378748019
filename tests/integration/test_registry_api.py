"""The migrator registry API over real HTTP semantics (ASGI) and a real database."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from loom_backend.api import create_api
from loom_backend.auth import AccessControl
from loom_backend.service import LoomService
from loom_backend.store.sql_store import SqlStore
from tests.credentials import Credentials
from tests.fakes import FakeEngine, FakeNotifier


def announcement(n: int = 3, **overrides) -> dict:
    body = {
        "id": "base-image",
        "name": "Upgrade base image",
        "description": "Every Dockerfile moves to the new base image",
        "requiredInputs": [{"name": "targetImage", "label": "Target image"}],
        "steps": [
            {"name": "bump", "migratorApp": "demo"},
            {"name": "review", "migratorApp": "demo", "type": "manual-review"},
        ],
        "candidates": [
            {"id": f"svc-{i}", "kind": "service" if i % 2 else "worker", "metadata": {"team": "a"}} for i in range(n)
        ],
        "migratorUrl": "http://127.0.0.1:9000",
    }
    body.update(overrides)
    return body


@pytest.fixture
async def api(store: SqlStore, access: AccessControl, credentials: Credentials) -> AsyncIterator[httpx.AsyncClient]:
    service = LoomService.over(store, FakeEngine(), FakeNotifier(), access)
    app = create_api(lambda: service)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://loom", auth=credentials.auth) as client:
        yield client


async def test_announce_answers_success_and_the_migration_reads_back_in_camel_case(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/registry/announce", json=announcement())
    assert response.status_code == 200
    assert response.json() == {"status": "SUCCESS"}
    migration = (await api.get("/api/migrations/base-image")).json()
    assert migration["migratorUrl"] == "http://127.0.0.1:9000"
    assert migration["requiredInputs"] == [{"name": "targetImage", "label": "Target image", "description": None}]
    assert [c["status"] for c in migration["candidates"]] == ["not_started"] * 3
    assert "createdAt" in migration
    listing = (await api.get("/api/migrations")).json()
    assert [m["id"] for m in listing["migrations"]] == ["base-image"]


async def test_announce_is_idempotent(api: httpx.AsyncClient) -> None:
    for _ in range(2):
        assert (await api.post("/api/registry/announce", json=announcement())).status_code == 200
    assert len((await api.get("/api/migrations")).json()["migrations"]) == 1


async def test_submitting_candidates_merges_and_answers_204(api: httpx.AsyncClient) -> None:
    await api.post("/api/registry/announce", json=announcement())
    response = await api.post(
        "/api/migrations/base-image/candidates", json={"candidates": [{"id": "new", "kind": "service"}]}
    )
    assert response.status_code == 204
    ids = [c["id"] for c in (await api.get("/api/migrations/base-image/candidates")).json()]
    assert ids == ["new"]


async def test_submitting_candidates_to_an_unknown_migration_is_404(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/migrations/nope/candidates", json={"candidates": []})
    assert response.status_code == 404
    assert "nope" in response.json()["message"]


async def test_candidates_are_a_json_array_of_all_by_default(api: httpx.AsyncClient) -> None:
    await api.post("/api/registry/announce", json=announcement(n=600))
    response = await api.get("/api/migrations/base-image/candidates")
    assert [c["id"] for c in response.json()] == [f"svc-{i}" for i in range(600)]
    assert response.headers["X-Total-Count"] == "600"
    assert "Link" not in response.headers


async def test_candidates_filter_and_page_with_the_total_and_links_in_headers(api: httpx.AsyncClient) -> None:
    await api.post("/api/registry/announce", json=announcement(n=10))
    response = await api.get(
        "/api/migrations/base-image/candidates", params={"kind": "worker", "limit": 2, "offset": 1}
    )
    assert [c["id"] for c in response.json()] == ["svc-2", "svc-4"]
    assert response.headers["X-Total-Count"] == "5"
    assert {rel: link["url"] for rel, link in response.links.items()} == {
        "next": "http://loom/api/migrations/base-image/candidates?kind=worker&limit=2&offset=3",
        "prev": "http://loom/api/migrations/base-image/candidates?kind=worker&limit=2&offset=0",
    }
    running = await api.get("/api/migrations/base-image/candidates", params={"status": "running"})
    assert (running.json(), running.headers["X-Total-Count"]) == ([], "0")
    bad = await api.get("/api/migrations/base-image/candidates", params={"status": "exploded"})
    assert bad.status_code == 422
    assert bad.json()["details"][0]["field"] == "status"


async def test_unknown_migration_is_404_with_a_json_reason(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/migrations/missing")
    assert response.status_code == 404
    assert response.json()["error"] == "MigrationNotFound"


async def test_health_and_openapi_are_served(api: httpx.AsyncClient) -> None:
    assert (await api.get("/api/healthz")).json() == {"status": "ok"}
    spec = (await api.get("/api/openapi.json")).json()
    assert "/api/registry/announce" in spec["paths"]
    assert (await api.get("/api/docs")).status_code == 200


@pytest.mark.parametrize(
    ("change", "field", "rule"),
    [
        ({"id": "Bad Id"}, "id", "value_error"),
        ({"migratorUrl": "ftp://x"}, "migratorUrl", "value_error"),
        ({"steps": [{"name": "a", "migratorApp": "m"}, {"name": "a", "migratorApp": "m"}]}, "steps", "value_error"),
        ({"candidates": [{"id": "x", "kind": "k"}, {"id": "x", "kind": "k"}]}, "candidates", "value_error"),
        ({"candidates": [{"id": "x"}]}, "candidates.0.kind", "missing"),
        ({"name": None}, "name", "string_type"),
        ({"steps": []}, "steps", "too_short"),
    ],
)
async def test_bad_announcements_are_rejected_naming_the_field_and_write_nothing(
    api: httpx.AsyncClient, change: dict, field: str, rule: str
) -> None:
    response = await api.post("/api/registry/announce", json=announcement(**change))
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "invalid_request"
    assert (field, rule) in [(d["field"], d["rule"]) for d in body["details"]]
    assert (await api.get("/api/migrations")).json() == {"migrations": []}


async def test_missing_required_fields_are_named(api: httpx.AsyncClient) -> None:
    response = await api.post("/api/registry/announce", json={"id": "x"})
    fields = {d["field"] for d in response.json()["details"]}
    assert {"name", "description", "steps", "candidates", "migratorUrl"} <= fields


async def test_malformed_json_is_422(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/registry/announce", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"


async def test_more_than_20000_candidates_is_413(api: httpx.AsyncClient) -> None:
    body = announcement(n=0)
    body["candidates"] = [{"id": f"c{i}", "kind": "k"} for i in range(20_001)]
    response = await api.post("/api/registry/announce", json=body)
    assert response.status_code == 413
    assert response.json()["error"] == "too_many_candidates"
    assert (await api.get("/api/migrations")).json() == {"migrations": []}


async def test_bodies_over_10_mb_are_413(api: httpx.AsyncClient) -> None:
    body = announcement()
    body["description"] = "x" * (11 * 1024 * 1024)
    response = await api.post("/api/registry/announce", content=json.dumps(body))
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"


async def test_a_chunked_body_over_10_mb_is_413_too(api: httpx.AsyncClient) -> None:
    """Without a Content-Length the limit trips while the route reads the body; that is still a 413."""

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"description": "'
        for _ in range(11):
            yield b"x" * (1024 * 1024)
        yield b'"}'

    response = await api.post("/api/registry/announce", content=chunks(), headers={"Content-Type": "application/json"})
    assert "content-length" not in response.request.headers
    assert response.status_code == 413, response.text
    assert response.json()["error"] == "body_too_large"
    assert (await api.get("/api/migrations")).json() == {"migrations": []}
