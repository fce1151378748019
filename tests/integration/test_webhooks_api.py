"""/api/webhooks over real HTTP semantics (ASGI) and a real database (SQLite and PostgreSQL): admins only, the secret
shown once, bad input a 4xx naming the field with nothing written; and `loom webhook add|list|remove`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from loom_backend import cli
from loom_backend.api import create_api
from loom_backend.auth import AccessControl
from loom_backend.domain import Role, TokenKind
from loom_backend.notifications import WebhookAdmin
from loom_backend.service import LoomService
from loom_backend.settings import get_settings
from loom_backend.store.sql_store import SqlStore
from loom_backend.store.webhook_store import SqlWebhookStore
from loom_backend.url_allow import MigratorUrlPolicy
from loom_backend.webhook_client import HttpWebhookSender
from tests.credentials import Credentials
from tests.integration.test_rollout_api import announcement

HOOK = {"url": "http://127.0.0.1:9999/hooks", "events": ["step_failed", "review_waiting"]}


@dataclass
class Api:
    client: httpx.AsyncClient
    operator: dict[str, str]
    store: SqlWebhookStore


@pytest.fixture
async def api(store: SqlStore, access: AccessControl, credentials: Credentials) -> AsyncIterator[Api]:
    from tests.fakes import FakeEngine, FakeNotifier

    sender = HttpWebhookSender(MigratorUrlPolicy("127.0.0.0/8", setting="LOOM_WEBHOOK_URL_ALLOW"))
    hooks = SqlWebhookStore(store)
    service = LoomService.over(store, FakeEngine(), FakeNotifier(), access, webhooks=WebhookAdmin(hooks, sender))
    _, secret = access.create_token(TokenKind.OPERATOR, "otto", Role.OPERATOR)
    transport = httpx.ASGITransport(app=create_api(lambda: service))
    async with httpx.AsyncClient(transport=transport, base_url="http://loom", auth=credentials.auth) as client:
        assert (await client.post("/api/registry/announce", json=announcement())).status_code == 200
        yield Api(client, {"Authorization": f"Bearer {secret}"}, hooks)
    await sender.aclose()


async def test_an_admin_adds_lists_and_removes_a_webhook_and_sees_its_secret_only_once(api: Api) -> None:
    body = {**HOOK, "migrationId": "base-image", "filter": {"owner": "t0"}}
    created = await api.client.post("/api/webhooks", json=body)
    assert created.status_code == 201, created.text
    hook = created.json()
    assert hook["secret"].startswith("loomwh_") and hook["createdBy"] == "test-operator"
    assert (hook["migrationId"], hook["filter"], hook["events"]) == ("base-image", {"owner": "t0"}, HOOK["events"])
    listed = (await api.client.get("/api/webhooks")).json()
    assert [h["id"] for h in listed] == [hook["id"]]
    assert "secret" not in listed[0] and hook["secret"] not in str(listed)
    assert (listed[0]["delivered"], listed[0]["failed"], listed[0]["pending"]) == (0, 0, False)
    assert (await api.client.delete(f"/api/webhooks/{hook['id']}")).status_code == 204
    assert (await api.client.get("/api/webhooks")).json() == []
    gone = await api.client.delete(f"/api/webhooks/{hook['id']}")
    assert gone.status_code == 404 and "loom webhook list" in gone.json()["message"]


async def test_operators_and_viewers_may_not_manage_webhooks(api: Api) -> None:
    for method, path in (("POST", "/api/webhooks"), ("GET", "/api/webhooks"), ("DELETE", "/api/webhooks/abc")):
        response = await api.client.request(method, path, json=HOOK, headers=api.operator)
        assert response.status_code == 403, (method, response.text)
    assert api.store.list_webhooks() == []


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({**HOOK, "url": "http://169.254.169.254/latest"}, 400, "link-local"),
        ({**HOOK, "url": "http://10.1.2.3/hooks"}, 400, "LOOM_WEBHOOK_URL_ALLOW"),
        ({**HOOK, "url": "ftp://127.0.0.1/x"}, 400, "http://"),
        ({**HOOK, "events": []}, 422, "events"),
        ({**HOOK, "events": ["step_exploded"]}, 422, "events"),
        ({**HOOK, "migrationId": "no-such"}, 404, "no-such"),
        ({**HOOK, "filter": {"": "x"}}, 400, "filter"),
    ],
)
async def test_a_bad_webhook_is_refused_naming_what_is_wrong_and_nothing_is_written(
    api: Api, body: dict, status: int, says: str
) -> None:
    response = await api.client.post("/api/webhooks", json=body)
    assert response.status_code == status, response.text
    assert says in response.text
    assert api.store.list_webhooks() == []


def test_the_cli_adds_lists_and_removes_a_webhook(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOOM_DATABASE_URL", f"sqlite:///{tmp_path / 'loom.db'}")
    get_settings.cache_clear()
    try:
        args = ["webhook", "add", "http://127.0.0.1:9/T0/B0", "--events", "step_failed,rollout_paused"]
        assert cli.main([*args, "--filter", "owner=team-a"]) == 0
        added = capsys.readouterr()
        secret = added.out.strip()
        assert secret.startswith("loomwh_") and "shown once" in added.err
        assert cli.main(["webhook", "list"]) == 0
        line = capsys.readouterr().out.strip()
        hook_id = line.split()[0]
        assert "http://127.0.0.1:9/T0/B0  step_failed,rollout_paused owner=team-a  delivered 0" in line
        assert secret not in line
        assert cli.main(["webhook", "add", "http://x/", "--events", "nope"]) == 2
        assert "events" in capsys.readouterr().err
        assert cli.main(["webhook", "remove", hook_id]) == 0
        assert cli.main(["webhook", "remove", hook_id]) == 2
        assert "No webhook" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()
