"""Access control over ASGI on a real database: who may call which route, Migration ownership, sign-in."""

from __future__ import annotations

import argparse
import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from loom_backend import auth, cli, errors
from loom_backend.api import create_api
from loom_backend.auth import AccessControl, SignInThrottle
from loom_backend.domain import SESSION_COOKIE, DryRunResult, MigrationAnnouncement, Role, TokenKind
from loom_backend.service import LoomService
from loom_backend.settings import Settings
from loom_backend.store.auth_store import SqlAuthStore
from loom_backend.store.sql_store import SqlStore
from tests.credentials import Credentials
from tests.fakes import FakeEngine, FakeNotifier
from tests.integration.test_registry_api import announcement

MIGRATION = "base-image"
RUN = f"/api/migrations/{MIGRATION}/candidates/svc-0"
EVENT = {"stepName": "bump", "candidateId": "svc-0", "status": "completed"}

MIGRATOR_ROUTES: list[tuple[str, str, Any]] = [
    ("POST", "/api/registry/announce", announcement()),
    ("POST", f"/api/migrations/{MIGRATION}/candidates", {"candidates": [{"id": "svc-0", "kind": "service"}]}),
    ("POST", f"/api/event/{MIGRATION}__svc-0", EVENT),
]
READ_ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/api/migrations", None),
    ("GET", f"/api/migrations/{MIGRATION}", None),
    ("GET", f"/api/migrations/{MIGRATION}/candidates", None),
    ("GET", f"/api/migrations/{MIGRATION}/events", None),
    ("GET", f"/api/migrations/{MIGRATION}/events.csv", None),
    ("GET", "/api/events", None),
    ("GET", "/api/events.csv", None),
    ("GET", f"{RUN}/steps", None),
    ("GET", "/api/metrics/overview", None),
    ("GET", "/api/prometheus", None),
    # A preview changes nothing: viewers may ask for one.
    ("POST", f"/api/migrations/{MIGRATION}/dry-run", {"candidateId": "svc-1"}),
]
ACTION_ROUTES: list[tuple[str, str, Any]] = [
    ("POST", f"{RUN}/start", {"inputs": {"targetImage": "base:2"}}),
    ("POST", f"{RUN}/retry-step", {"stepName": "bump"}),
    ("POST", f"{RUN}/steps/review/approve", {}),
    ("POST", f"{RUN}/steps/review/reject", {}),
    ("POST", f"{RUN}/steps/bump/mark-merged", None),
    ("PATCH", f"{RUN}/inputs", {"inputs": {"targetImage": "base:3"}}),
    ("POST", f"{RUN}/cancel", None),
]
MIGRATOR_ONLY_ROUTES = MIGRATOR_ROUTES[:2]  # an operator may post to /api/event too: a manual override
OPERATOR_ROUTES = READ_ROUTES + ACTION_ROUTES
ALL_ROUTES = MIGRATOR_ROUTES + OPERATOR_ROUTES


def ids(routes: list[tuple[str, str, Any]]) -> list[str]:
    return [f"{method} {path}" for method, path, _ in routes]


@dataclass
class Loom:
    client: httpx.AsyncClient
    access: AccessControl
    engine: FakeEngine
    credentials: Credentials

    async def call(self, method: str, path: str, body: Any = None, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return await self.client.request(method, path, json=body, headers=headers)

    def token(self, kind: TokenKind, name: str, role: Role | None = None) -> str:
        return self.access.create_token(kind, name, role)[1]


def build_app(store: SqlStore, access: AccessControl, engine: FakeEngine) -> Any:
    notifier = FakeNotifier(dry_run_result=DryRunResult(steps=[]))
    service = LoomService.over(store, engine, notifier, access)
    return create_api(lambda: service)


@pytest.fixture
async def loom(store: SqlStore, access: AccessControl, credentials: Credentials) -> AsyncIterator[Loom]:
    engine = FakeEngine()
    transport = httpx.ASGITransport(app=build_app(store, access, engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://loom") as client:
        loom = Loom(client, access, engine, credentials)
        response = await loom.call("POST", "/api/registry/announce", announcement(), credentials.migrator_token)
        assert response.status_code == 200, response.text
        yield loom


def assert_refused(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == ("Unauthenticated" if status == 401 else "Forbidden")
    assert body["message"]
    if status == 401:
        assert response.headers["www-authenticate"] == 'Bearer realm="loom"'


@pytest.mark.parametrize(("method", "path", "body"), ALL_ROUTES, ids=ids(ALL_ROUTES))
async def test_every_route_without_credentials_is_401_json_with_www_authenticate(
    loom: Loom, method: str, path: str, body: Any
) -> None:
    assert_refused(await loom.call(method, path, body), 401)
    assert_refused(await loom.call(method, path, body, token="loom_m_not-a-real-token"), 401)


async def test_health_and_the_api_description_stay_public(loom: Loom) -> None:
    assert (await loom.client.get("/api/healthz")).status_code == 200
    assert (await loom.client.get("/api/openapi.json")).status_code == 200


@pytest.mark.parametrize(("method", "path", "body"), MIGRATOR_ONLY_ROUTES, ids=ids(MIGRATOR_ONLY_ROUTES))
async def test_migrator_routes_refuse_operator_tokens_with_403(loom: Loom, method: str, path: str, body: Any) -> None:
    assert_refused(await loom.call(method, path, body, loom.credentials.operator_token), 403)


async def test_a_step_callback_from_a_viewer_is_403_and_from_an_operator_a_manual_override(loom: Loom) -> None:
    method, path, body = MIGRATOR_ROUTES[2]
    assert_refused(await loom.call(method, path, body, loom.token(TokenKind.OPERATOR, "vic", Role.VIEWER)), 403)
    override = await loom.call(method, path, body, loom.token(TokenKind.OPERATOR, "olga", Role.OPERATOR))
    assert override.status_code == 409, "past authorization: the Candidate has no Run to override"
    assert "has no Run in progress" in override.json()["message"]


@pytest.mark.parametrize(("method", "path", "body"), OPERATOR_ROUTES, ids=ids(OPERATOR_ROUTES))
async def test_operator_routes_refuse_migrator_tokens_with_403(loom: Loom, method: str, path: str, body: Any) -> None:
    assert_refused(await loom.call(method, path, body, loom.credentials.migrator_token), 403)


@pytest.mark.parametrize(("method", "path", "body"), READ_ROUTES, ids=ids(READ_ROUTES))
async def test_viewers_operators_and_admins_read_everything(loom: Loom, method: str, path: str, body: Any) -> None:
    for role in Role:
        response = await loom.call(method, path, body, loom.token(TokenKind.OPERATOR, f"reader-{role}", role))
        assert response.status_code not in (401, 403), (role, response.text)


@pytest.mark.parametrize(("method", "path", "body"), ACTION_ROUTES, ids=ids(ACTION_ROUTES))
async def test_viewers_change_nothing(loom: Loom, method: str, path: str, body: Any) -> None:
    viewer = loom.token(TokenKind.OPERATOR, "vera", Role.VIEWER)
    response = await loom.call(method, path, body, viewer)
    assert_refused(response, 403)
    assert "viewer" in response.json()["message"]
    assert loom.engine.actions == []


async def test_operators_and_admins_drive_runs_recorded_under_their_own_names(loom: Loom) -> None:
    for role, name in ((Role.OPERATOR, "olga"), (Role.ADMIN, "ada")):
        token = loom.token(TokenKind.OPERATOR, name, role)
        for method, path, body in ACTION_ROUTES:
            response = await loom.call(method, path, body, token)
            assert response.status_code not in (401, 403), (role, path, response.text)
    actors = {action[-1] for action in loom.engine.actions if action[0] in ("start", "cancel", "retry", "approve")}
    assert actors == {"olga", "ada"}


async def test_an_actor_header_cannot_pose_as_someone_else(loom: Loom) -> None:
    token = loom.token(TokenKind.OPERATOR, "olga", Role.OPERATOR)
    response = await loom.client.post(
        f"{RUN}/start",
        json={"inputs": {"targetImage": "x"}},
        headers={"Authorization": f"Bearer {token}", "X-Loom-Actor": "mallory"},
    )
    assert response.status_code == 202
    assert loom.engine.actions[0][-1] == "olga"


async def test_a_migration_belongs_to_the_token_that_first_announced_it(loom: Loom) -> None:
    other = loom.token(TokenKind.MIGRATOR, "other-migrator")
    for method, path, body in MIGRATOR_ROUTES:
        response = await loom.call(method, path, body, other)
        assert_refused(response, 403)
        assert MIGRATION in response.json()["message"]
    own = await loom.call(
        "POST", "/api/registry/announce", announcement(name="Renamed"), loom.credentials.migrator_token
    )
    assert own.status_code == 200
    submitted = await loom.call(*MIGRATOR_ROUTES[1][:2], MIGRATOR_ROUTES[1][2], loom.credentials.migrator_token)
    assert submitted.status_code == 204
    theirs = await loom.call("POST", "/api/registry/announce", announcement(id="theirs"), other)
    assert theirs.status_code == 200
    refused = await loom.call(
        "POST", "/api/registry/announce", announcement(id="theirs"), loom.credentials.migrator_token
    )
    assert_refused(refused, 403)


async def test_events_are_scoped_to_the_owner_and_name_a_matching_candidate(loom: Loom) -> None:
    token = loom.credentials.migrator_token
    await loom.call("POST", f"{RUN}/start", {"inputs": {"targetImage": "x"}}, loom.credentials.operator_token)
    assert (await loom.call("POST", f"/api/event/{MIGRATION}__svc-0", EVENT, token)).status_code == 202
    mismatch = await loom.call("POST", f"/api/event/{MIGRATION}__svc-1", EVENT, token)
    assert mismatch.status_code == 400
    assert mismatch.json()["details"][0]["field"] == "candidateId"
    unknown = await loom.call("POST", "/api/event/nope__svc-0", EVENT, token)
    assert unknown.status_code == 404


async def test_a_revoked_token_is_401_and_its_migration_goes_to_the_next_token_that_announces(loom: Loom) -> None:
    record = next(t for t in loom.access.store.list_tokens() if t.name == loom.credentials.migrator)
    assert (await loom.call(*MIGRATOR_ROUTES[0], loom.credentials.migrator_token)).status_code == 200
    assert loom.access.store.revoke_token(record.id, datetime.now(UTC))  # as `loom token revoke` does, elsewhere
    # This process remembers the token's answer for a few seconds; once they pass, the token is refused.
    assert (await loom.call(*MIGRATOR_ROUTES[0], loom.credentials.migrator_token)).status_code == 200
    later = datetime.now(UTC) + loom.access.remembered_for + timedelta(seconds=1)
    loom.access.clock = lambda: later
    assert_refused(await loom.call(*MIGRATOR_ROUTES[0], loom.credentials.migrator_token), 401)
    successor = loom.token(TokenKind.MIGRATOR, loom.credentials.migrator)
    assert (await loom.call(*MIGRATOR_ROUTES[0], successor)).status_code == 200
    assert (await loom.call(*MIGRATOR_ROUTES[1], successor)).status_code == 204


class CountingAuthStore(SqlAuthStore):
    """Counts the lookups a Migrator's callbacks would otherwise make on every request."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.lookups: list[str] = []

    def token_by_digest(self, digest: str) -> Any:
        self.lookups.append("token")
        return super().token_by_digest(digest)

    def ownership(self, migration_id: str) -> Any:
        self.lookups.append("ownership")
        return super().ownership(migration_id)

    def signing_key(self, migration_id: str) -> bytes | None:
        self.lookups.append("signing_key")
        return super().signing_key(migration_id)


def test_answers_that_let_a_migrator_in_are_remembered_for_seconds_and_an_owner_change_applies_at_once(
    store: SqlStore,
) -> None:
    now = datetime.now(UTC)
    auth_store = CountingAuthStore(store.engine)
    access = AccessControl(auth_store, clock=lambda: now, remember_seconds=5)
    old, old_secret = access.create_token(TokenKind.MIGRATOR, "base-image")
    new, new_secret = access.create_token(TokenKind.MIGRATOR, "base-image")
    store.announce(MigrationAnnouncement.model_validate(announcement()), now)
    principal = access.bearer(old_secret)
    assert principal is not None and access.claim_migration(principal, MIGRATION)
    access.check_migration(principal, MIGRATION)

    assert access.recent_bearer(old_secret) == principal
    assert access.recently_allowed(principal, MIGRATION)
    assert access.recent_bearer(new_secret) is None  # never asked: only answers that were given are remembered
    assert access.recent_signing_key(MIGRATION) is None
    assert access.signing_key(MIGRATION) == access.recent_signing_key(MIGRATION) == bytes.fromhex(old.digest)
    assert auth_store.lookups.count("signing_key") == 1

    auth_store.revoke_token(old.id, now)
    assert access.recent_bearer(old_secret) == principal  # revoked elsewhere: remembered a few seconds more
    now += timedelta(seconds=6)
    assert access.recent_bearer(old_secret) is None and access.bearer(old_secret) is None

    successor = access.bearer(new_secret)
    assert successor is not None and access.claim_migration(successor, MIGRATION)
    assert not access.recently_allowed(principal, MIGRATION)
    assert access.recent_signing_key(MIGRATION) is None  # forgotten at the claim, not in 5 s
    assert access.signing_key(MIGRATION) == bytes.fromhex(new.digest)
    with pytest.raises(errors.Forbidden):
        access.check_migration(principal, MIGRATION)


def test_remember_seconds_zero_asks_the_store_every_time(store: SqlStore) -> None:
    auth_store = CountingAuthStore(store.engine)
    access = AccessControl(auth_store, remember_seconds=0)
    _, secret = access.create_token(TokenKind.MIGRATOR, "base-image")
    assert access.bearer(secret) is not None
    assert access.recent_bearer(secret) is None
    assert access.bearer(secret) is not None
    assert auth_store.lookups == ["token", "token"]


# -- signing in -----------------------------------------------------------------------------


async def test_sign_in_sets_an_http_only_lax_cookie_and_me_answers_who_it_is(loom: Loom) -> None:
    loom.access.add_user("alice", Role.OPERATOR, "correct horse battery")
    response = await loom.client.post(
        "/api/auth/login", json={"username": "alice", "password": "correct horse battery"}
    )
    assert response.status_code == 200
    assert response.json() == {"name": "alice", "kind": "user", "role": "operator"}
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    me = await loom.client.get("/api/auth/me")
    assert me.json() == {"name": "alice", "kind": "user", "role": "operator"}
    started = await loom.client.post(
        f"{RUN}/start", json={"inputs": {"targetImage": "x"}}, headers={"Origin": "http://loom"}
    )
    assert started.status_code == 202
    assert loom.engine.actions[-1][-1] == "alice"


async def test_sign_out_ends_the_session_even_for_a_copied_cookie(loom: Loom) -> None:
    loom.access.add_user("alice", Role.VIEWER, "correct horse battery")
    await loom.client.post("/api/auth/login", json={"username": "alice", "password": "correct horse battery"})
    copied = loom.client.cookies[SESSION_COOKIE]
    assert (await loom.client.post("/api/auth/logout")).status_code == 204
    assert_refused(await loom.client.get("/api/auth/me"), 401)
    replayed = await loom.client.get("/api/migrations", cookies={SESSION_COOKIE: copied})
    assert_refused(replayed, 401)


@pytest.mark.parametrize(
    "login", [{"username": "alice", "password": "wrong password"}, {"username": "nobody", "password": "x" * 9}]
)
async def test_a_wrong_password_or_unknown_user_is_401_saying_nothing_more(loom: Loom, login: dict) -> None:
    loom.access.add_user("alice", Role.ADMIN, "correct horse battery")
    response = await loom.client.post("/api/auth/login", json=login)
    assert_refused(response, 401)
    assert response.json()["message"] == "Wrong username or password"
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")


async def test_the_cookie_is_secure_when_loom_is_served_over_https(store: SqlStore) -> None:
    access = AccessControl(
        SqlAuthStore(store.engine), secure_cookie=Settings(public_url="https://loom.example").secure_cookies
    )
    access.add_user("alice", Role.ADMIN, "correct horse battery")
    transport = httpx.ASGITransport(app=build_app(store, access, FakeEngine()))
    async with httpx.AsyncClient(transport=transport, base_url="https://loom") as client:
        response = await client.post("/api/auth/login", json={"username": "alice", "password": "correct horse battery"})
    assert "Secure" in response.headers["set-cookie"]


async def test_behind_an_authenticating_proxy_its_header_names_the_operator(store: SqlStore) -> None:
    access = AccessControl(SqlAuthStore(store.engine), proxy_header="X-Forwarded-User", proxy_role=Role.VIEWER)
    access.add_user("ada", Role.ADMIN, "correct horse battery")
    transport = httpx.ASGITransport(app=build_app(store, access, FakeEngine()))
    async with httpx.AsyncClient(transport=transport, base_url="http://loom") as client:
        me = await client.get("/api/auth/me", headers={"X-Forwarded-User": "pat"})
        assert me.json() == {"name": "pat", "kind": "proxy_user", "role": "viewer"}
        known = await client.get("/api/auth/me", headers={"X-Forwarded-User": "ada"})
        assert known.json()["role"] == "admin"
        assert_refused(await client.get("/api/migrations"), 401)


async def test_the_sign_in_form_redirects_to_next_with_the_session_cookie(loom: Loom) -> None:
    loom.access.add_user("alice", Role.OPERATOR, "correct horse battery")
    form = {"username": "alice", "password": "correct horse battery", "next": "/migrations/base-image?q=svc"}
    response = await loom.client.post("/api/auth/login-form", data=form)
    assert response.status_code == 303
    assert response.headers["location"] == "/migrations/base-image?q=svc"
    assert "HttpOnly" in response.headers["set-cookie"]
    assert (await loom.client.get("/api/auth/me")).json()["name"] == "alice"


async def test_a_wrong_password_on_the_sign_in_form_goes_back_to_the_page_without_a_cookie(loom: Loom) -> None:
    loom.access.add_user("alice", Role.OPERATOR, "correct horse battery")
    form = {"username": "alice", "password": "wrong password", "next": "/inbox"}
    response = await loom.client.post("/api/auth/login-form", data=form)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?failed=1&username=alice&next=%2Finbox"
    assert "set-cookie" not in response.headers


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "inbox", ""])
async def test_the_sign_in_form_never_redirects_to_another_site(loom: Loom, target: str) -> None:
    loom.access.add_user("alice", Role.OPERATOR, "correct horse battery")
    form = {"username": "alice", "password": "correct horse battery", "next": target}
    response = await loom.client.post("/api/auth/login-form", data=form)
    assert response.headers["location"] == "/"


async def test_the_sign_in_form_refuses_a_post_from_another_site(loom: Loom) -> None:
    loom.access.add_user("alice", Role.OPERATOR, "correct horse battery")
    form = {"username": "alice", "password": "correct horse battery", "next": "/"}
    response = await loom.client.post("/api/auth/login-form", data=form, headers={"Origin": "https://evil.example"})
    assert response.status_code == 403
    assert response.json()["error"] == "CrossSiteRequest"
    assert "set-cookie" not in response.headers
    same_site = await loom.client.post("/api/auth/login-form", data=form, headers={"Origin": "http://loom"})
    assert same_site.status_code == 303


# -- cross-site requests (CSRF) ---------------------------------------------------------------

COOKIE_WRITES = [(m, p, b) for m, p, b in ACTION_ROUTES if p.endswith(("/start", "/cancel", "/inputs", "/dry-run"))]


async def signed_in(loom: Loom, role: Role = Role.OPERATOR) -> None:
    """Sign `alice` in through the API, so the client carries her session cookie and no bearer token."""
    loom.access.add_user("alice", role, "correct horse battery")
    response = await loom.client.post(
        "/api/auth/login", json={"username": "alice", "password": "correct horse battery"}
    )
    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("method", "path", "body"), COOKIE_WRITES, ids=ids(COOKIE_WRITES))
@pytest.mark.parametrize(
    "headers",
    [{"Origin": "http://evil.example"}, {"Origin": "null"}, {"Referer": "http://evil.example/page"}, {}],
    ids=["other-origin", "null-origin", "other-referer", "no-origin-nor-referer"],
)
async def test_a_cookie_authenticated_write_not_from_looms_own_pages_is_refused_as_cross_site(
    loom: Loom, method: str, path: str, body: Any, headers: dict[str, str]
) -> None:
    await signed_in(loom)
    response = await loom.client.request(method, path, json=body, headers=headers)
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "CrossSiteRequest"
    assert "Loom's own pages" in response.json()["message"] or "Origin" in response.json()["message"]
    assert loom.engine.actions == []


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "http://loom"}, {"Origin": "http://localhost:3000"}, {"Referer": "http://loom/migrations/x"}],
    ids=["the-host", "the-public-url", "own-referer"],
)
async def test_a_cookie_authenticated_write_from_looms_own_pages_is_taken(loom: Loom, headers: dict[str, str]) -> None:
    await signed_in(loom)
    response = await loom.client.post(f"{RUN}/start", json={"inputs": {"targetImage": "x"}}, headers=headers)
    assert response.status_code == 202, response.text


async def test_reads_with_the_cookie_and_writes_with_a_bearer_token_need_no_origin(loom: Loom) -> None:
    """A page of another site cannot add an Authorization header, nor read what a GET answers."""
    await signed_in(loom)
    evil = {"Origin": "http://evil.example"}
    assert (await loom.client.get("/api/migrations", headers=evil)).status_code == 200
    operator = loom.token(TokenKind.OPERATOR, "ci", Role.OPERATOR)
    loom.client.cookies.clear()
    response = await loom.client.post(
        f"{RUN}/start", json={"inputs": {"targetImage": "x"}}, headers={**evil, "Authorization": f"Bearer {operator}"}
    )
    assert response.status_code == 202, response.text


async def test_a_write_through_the_authenticating_proxy_needs_no_origin(store: SqlStore) -> None:
    access = AccessControl(SqlAuthStore(store.engine), proxy_header="X-Forwarded-User")
    engine = FakeEngine()
    transport = httpx.ASGITransport(app=build_app(store, access, engine))
    async with httpx.AsyncClient(transport=transport, base_url="http://loom") as client:
        response = await client.post(
            "/api/migrations/nowhere/candidates/x/cancel", headers={"X-Forwarded-User": "pat", "Origin": "null"}
        )
    assert response.status_code == 404, response.text


async def test_signing_in_from_another_sites_page_is_refused_but_a_script_may_sign_in(loom: Loom) -> None:
    loom.access.add_user("alice", Role.OPERATOR, "correct horse battery")
    login = {"username": "alice", "password": "correct horse battery"}
    refused = await loom.client.post("/api/auth/login", json=login, headers={"Origin": "null"})
    assert refused.status_code == 403
    assert refused.json()["error"] == "CrossSiteRequest"
    assert (await loom.client.post("/api/auth/login", json=login)).status_code == 200


# -- sign-in throttling --------------------------------------------------------------------------


@dataclass
class Door:
    """One service behind two client addresses, with small throttling limits so tests hash few passwords."""

    service: LoomService
    app: Any

    def client(self, address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://loom")


@pytest.fixture
def door(store: SqlStore, access: AccessControl) -> Door:
    access.add_user("alice", Role.OPERATOR, "correct horse battery")
    access.add_user("bob", Role.OPERATOR, "correct horse battery")
    notifier = FakeNotifier(dry_run_result=DryRunResult(steps=[]))
    throttle = SignInThrottle(per_account=3, per_client=5, window_seconds=600)
    service = LoomService.over(store, FakeEngine(), notifier, access, sign_in_throttle=throttle)
    return Door(service, create_api(lambda: service))


def wrong(username: str) -> dict[str, str]:
    return {"username": username, "password": "wrong password"}


RIGHT = {"username": "alice", "password": "correct horse battery"}


async def test_an_account_with_too_many_failed_sign_ins_waits_with_429_and_retry_after(door: Door) -> None:
    async with door.client("10.0.0.1") as first, door.client("10.0.0.2") as other:
        for _ in range(3):
            assert (await first.post("/api/auth/login", json=wrong("alice"))).status_code == 401
        throttled = await first.post("/api/auth/login", json=RIGHT)
        assert throttled.status_code == 429, throttled.text
        assert throttled.json()["error"] == "TooManySignIns"
        assert 0 < int(throttled.headers["retry-after"]) <= 600
        assert (await other.post("/api/auth/login", json=RIGHT)).status_code == 429  # the account, from anywhere
        form = await other.post("/api/auth/login-form", data={**RIGHT, "next": "/"})
        assert form.status_code == 429
        assert "retry-after" in form.headers
        assert (await other.post("/api/auth/login", json={**RIGHT, "username": "bob"})).status_code == 200


async def test_an_address_with_too_many_failed_sign_ins_waits_whichever_account_it_tries(door: Door) -> None:
    async with door.client("10.0.0.1") as guesser, door.client("10.0.0.2") as other:
        for name in ("carol", "dave", "erin", "frank", "grace"):
            assert (await guesser.post("/api/auth/login", json=wrong(name))).status_code == 401
        throttled = await guesser.post("/api/auth/login", json=RIGHT)
        assert throttled.status_code == 429
        assert "retry-after" in throttled.headers
        assert (await other.post("/api/auth/login", json=RIGHT)).status_code == 200


async def test_a_failed_sign_in_is_logged_with_the_name_and_address_never_the_password(
    door: Door, caplog: pytest.LogCaptureFixture
) -> None:
    async with door.client("10.0.0.7") as client:
        with caplog.at_level(logging.WARNING, logger="loom_backend.service"):
            await client.post("/api/auth/login-form", data={**wrong("alice"), "next": "/"})
    failed = [r.getMessage() for r in caplog.records if "Failed sign-in" in r.getMessage()]
    assert failed == ["Failed sign-in for 'alice' from 10.0.0.7"]
    assert "wrong password" not in caplog.text


async def test_sixteen_sign_ins_at_once_check_only_a_few_passwords_at_a_time(
    door: Door, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each Argon2 check takes ~64 MB for a moment; a burst must queue, not add up."""
    running, most, lock = 0, 0, threading.Lock()
    real = auth.verify_password

    def counted(password_hash: str, password: str) -> bool:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        try:
            return real(password_hash, password)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(auth, "verify_password", counted)
    async with door.client("10.0.0.1") as client:
        answers = await asyncio.gather(
            *(client.post("/api/auth/login", json={**RIGHT, "username": ("alice", "bob")[i % 2]}) for i in range(16))
        )
    assert [a.status_code for a in answers] == [200] * 16
    assert 1 <= most <= 2


# -- the command line -----------------------------------------------------------------------


def test_loom_token_create_prints_a_token_once_that_authenticates(
    tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'cli.db'}")
    args = argparse.Namespace(action="create", migrator_app="hello", operator=None, role=None)
    assert cli._token(settings, args) == 0
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("loom_m_")
    access = AccessControl(SqlAuthStore(SqlStore(settings.sqlalchemy_url).engine))
    principal = access.bearer(secret)
    assert principal is not None and principal.is_migrator and principal.name == "hello"
    assert all(secret not in t.digest for t in access.store.list_tokens())
    operator = argparse.Namespace(action="create", migrator_app=None, operator="ci", role="viewer")
    assert cli._token(settings, operator) == 0
    assert access.bearer(capsys.readouterr().out.strip()).role == Role.VIEWER  # type: ignore[union-attr]
    assert cli._add_user(settings, "root", "admin", "correct horse battery") == 0
    assert access.login("root", "correct horse battery")[1].role == Role.ADMIN
    assert cli._add_user(settings, "root", "admin", "another password") == 2
