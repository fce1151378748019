"""Saved table views over the real routes (ASGI) and a real database, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from loom_backend.api import create_api
from loom_backend.auth import AccessControl
from loom_backend.domain import MAX_VIEWS_PER_MIGRATION, Role, TokenKind
from loom_backend.service import LoomService
from loom_backend.store.saved_views import SqlSavedViews
from loom_backend.store.sql_store import SqlStore
from tests.credentials import Credentials
from tests.fakes import FakeEngine, FakeNotifier

M = "/api/migrations/base-image"
VIEWER: dict[str, str] = {}


def announcement(migration_id: str = "base-image") -> dict:
    return {
        "id": migration_id,
        "name": "Upgrade base image",
        "description": "Every Dockerfile moves to the new base image",
        "steps": [{"name": "bump", "migratorApp": "demo"}],
        "candidates": [{"id": "svc-0", "kind": "service"}],
        "migratorUrl": "http://127.0.0.1:9000",
    }


@pytest.fixture
async def client(store: SqlStore, access: AccessControl, credentials: Credentials) -> AsyncIterator[httpx.AsyncClient]:
    service = LoomService.over(store, FakeEngine(), FakeNotifier(), access, views=SqlSavedViews(store.engine))
    transport = httpx.ASGITransport(app=create_api(lambda: service))
    _, secret = access.create_token(TokenKind.OPERATOR, "vera", Role.VIEWER)
    VIEWER["Authorization"] = f"Bearer {secret}"
    async with httpx.AsyncClient(transport=transport, base_url="http://loom", auth=credentials.auth) as c:
        for mid in ("base-image", "other"):
            assert (await c.post("/api/registry/announce", json=announcement(mid))).status_code == 200
        yield c


QUERY = {"view": "table", "step": "bump", "stepStatus": "failed", "sort": "-timeInStatus", "cols": "owner,tier"}


async def test_a_saved_view_reads_back_by_name_and_in_the_list(client: httpx.AsyncClient) -> None:
    saved = await client.put(f"{M}/views/Failed bumps", json={"params": QUERY})
    assert saved.status_code == 200, saved.text
    assert saved.json()["name"] == "Failed bumps"
    assert saved.json()["savedBy"] and saved.json()["updatedAt"]
    one = await client.get(f"{M}/views/Failed bumps", headers=VIEWER)
    assert one.status_code == 200 and one.json()["params"] == QUERY
    listed = (await client.get(f"{M}/views", headers=VIEWER)).json()["views"]
    assert [v["name"] for v in listed] == ["Failed bumps"]
    assert (await client.get("/api/migrations/other/views")).json() == {"views": []}, "views are per Migration"


async def test_saving_a_name_again_replaces_the_view(client: httpx.AsyncClient) -> None:
    await client.put(f"{M}/views/mine", json={"params": QUERY})
    await client.put(f"{M}/views/mine", json={"params": {"view": "table", "sort": "id"}})
    views = (await client.get(f"{M}/views")).json()["views"]
    assert [(v["name"], v["params"]) for v in views] == [("mine", {"view": "table", "sort": "id"})]


async def test_a_deleted_view_is_gone_and_deleting_it_again_is_404(client: httpx.AsyncClient) -> None:
    await client.put(f"{M}/views/mine", json={"params": QUERY})
    assert (await client.delete(f"{M}/views/mine")).status_code == 204
    assert (await client.get(f"{M}/views/mine")).status_code == 404
    again = await client.delete(f"{M}/views/mine")
    assert again.status_code == 404
    assert again.json()["error"] == "SavedViewNotFound" and "mine" in again.json()["message"]


async def test_a_view_of_an_unknown_migration_is_404(client: httpx.AsyncClient) -> None:
    response = await client.put("/api/migrations/nope/views/mine", json={"params": QUERY})
    assert response.status_code == 404
    assert response.json()["error"] == "MigrationNotFound"


@pytest.mark.parametrize(
    ("name", "says"),
    [("   ", "needs a name"), (" padded", "leading or trailing"), ("x" * 65, "at most 64"), ("tab%09here", "control")],
)
async def test_a_bad_name_is_400_naming_the_field_and_saves_nothing(
    client: httpx.AsyncClient, name: str, says: str
) -> None:
    response = await client.put(f"{M}/views/{name}", json={"params": QUERY})
    assert response.status_code == 400, response.text
    assert says in response.json()["message"]
    assert response.json()["details"][0]["field"] == "name"
    assert (await client.get(f"{M}/views")).json() == {"views": []}


@pytest.mark.parametrize(
    "body",
    [
        {"params": {"k": "v" * 1001}},
        {"params": {f"k{i}": "v" for i in range(41)}},
        {"params": {"": "v"}},
        {"params": []},
    ],
)
async def test_a_malformed_query_is_422_and_saves_nothing(client: httpx.AsyncClient, body: dict) -> None:
    response = await client.put(f"{M}/views/mine", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["details"][0]["field"].startswith("params")
    assert (await client.get(f"{M}/views")).json() == {"views": []}


async def test_viewers_read_views_but_only_operators_save_or_delete_them(client: httpx.AsyncClient) -> None:
    await client.put(f"{M}/views/mine", json={"params": QUERY})
    assert (await client.put(f"{M}/views/theirs", json={"params": QUERY}, headers=VIEWER)).status_code == 403
    assert (await client.delete(f"{M}/views/mine", headers=VIEWER)).status_code == 403
    assert (await client.get(f"{M}/views/mine", headers=VIEWER)).status_code == 200


async def test_a_migration_keeps_at_most_its_limit_of_views_but_one_may_still_be_replaced(
    client: httpx.AsyncClient,
) -> None:
    for i in range(MAX_VIEWS_PER_MIGRATION):
        assert (await client.put(f"{M}/views/v{i:03}", json={"params": {}})).status_code == 200
    over = await client.put(f"{M}/views/one-more", json={"params": {}})
    assert over.status_code == 400 and "delete one first" in over.json()["message"]
    assert (await client.put(f"{M}/views/v000", json={"params": QUERY})).status_code == 200
    assert len((await client.get(f"{M}/views")).json()["views"]) == MAX_VIEWS_PER_MIGRATION
