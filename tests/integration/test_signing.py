"""Loom signs what it sends; the SDK refuses anything forged, stale, replayed or unsigned."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from loom_backend.api import create_api
from loom_backend.auth import AccessControl
from loom_backend.domain import Candidate, DispatchStepRequest, DryRunRequest
from loom_backend.migrator_client import DispatchRejected, HttpMigratorNotifier
from loom_backend.service import LoomService
from loom_backend.signing import (
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    SignatureRejected,
    SignatureVerifier,
    sign,
    signing_key,
)
from loom_backend.store.auth_store import SqlAuthStore
from loom_backend.store.sql_store import SqlStore
from loom_migrator import Migrator, StepContext
from loom_migrator.testing import FakeLoom
from tests.credentials import Credentials
from tests.fakes import FakeEngine

BODY = (
    DryRunRequest(migration_id="greet", candidate=Candidate(id="checkout", kind="service"), steps=[])
    .model_dump_json()
    .encode()
)


@pytest.fixture
def loom() -> Iterator[FakeLoom]:
    with FakeLoom() as fake:
        yield fake


@pytest.fixture
def migrator(loom: FakeLoom) -> Iterator[Migrator]:
    migrator = Migrator("greet", "Greet", "Say hello.", loom_url=loom.url, token=loom.token, rediscover_every=None)

    @migrator.step("hello")
    async def hello(ctx: StepContext) -> None:
        return None

    with migrator.serve_in_thread():
        loom.wait_for_announcement()
        yield migrator


def post(migrator: Migrator, headers: dict[str, str], body: bytes = BODY) -> httpx.Response:
    return httpx.post(
        f"{migrator.migrator_url}/dry-run", content=body, headers={"content-type": "application/json", **headers}
    )


def test_the_sdk_sends_its_token_as_bearer_and_the_fake_loom_refuses_without_it(loom: FakeLoom) -> None:
    unsigned = httpx.post(f"{loom.url}/api/registry/announce", json={})
    assert unsigned.status_code == 401
    assert unsigned.headers["www-authenticate"].startswith("Bearer")


def test_a_request_signed_with_the_migrators_token_is_accepted(loom: FakeLoom, migrator: Migrator) -> None:
    assert post(migrator, sign(signing_key(loom.token), "POST", "/dry-run", BODY)).status_code == 200


@pytest.mark.parametrize("route", ["/dispatch-step", "/dry-run"])
def test_an_unsigned_request_is_refused_with_401(migrator: Migrator, route: str) -> None:
    response = httpx.post(f"{migrator.migrator_url}{route}", content=BODY)
    assert response.status_code == 401
    assert "not signed" in response.json()["message"]


def test_a_request_signed_with_another_key_is_refused_as_forged(migrator: Migrator) -> None:
    response = post(migrator, sign(signing_key("loom_m_someone-else-entirely-000000000000"), "POST", "/dry-run", BODY))
    assert response.status_code == 401
    assert "does not match" in response.json()["message"]


def test_a_tampered_body_is_refused_as_forged(loom: FakeLoom, migrator: Migrator) -> None:
    headers = sign(signing_key(loom.token), "POST", "/dry-run", BODY)
    tampered = BODY.replace(b"checkout", b"billing!")
    assert post(migrator, headers, tampered).status_code == 401


@pytest.mark.parametrize("skew", [-301, 301, -3600])
def test_a_request_more_than_five_minutes_off_is_refused_as_stale(
    loom: FakeLoom, migrator: Migrator, skew: int
) -> None:
    response = post(migrator, sign(signing_key(loom.token), "POST", "/dry-run", BODY, now=time.time() + skew))
    assert response.status_code == 401
    assert "stale" in response.json()["message"]


def test_a_replayed_request_is_refused(loom: FakeLoom, migrator: Migrator) -> None:
    headers = sign(signing_key(loom.token), "POST", "/dry-run", BODY)
    assert post(migrator, headers).status_code == 200
    replayed = post(migrator, headers)
    assert replayed.status_code == 401
    assert "replay" in replayed.json()["message"]


def test_the_same_body_signed_twice_is_two_requests_not_a_replay(loom: FakeLoom, migrator: Migrator) -> None:
    key = signing_key(loom.token)
    assert post(migrator, sign(key, "POST", "/dry-run", BODY)).status_code == 200
    assert post(migrator, sign(key, "POST", "/dry-run", BODY)).status_code == 200


def test_a_migrator_without_a_token_refuses_everything_loom_sends(
    loom: FakeLoom, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOOM_TOKEN", raising=False)
    tokenless = Migrator("greet", "Greet", "Say hello.", loom_url=loom.url, rediscover_every=None)
    tokenless.step("hello")(_noop)
    with tokenless.serve_in_thread():
        response = post(tokenless, sign(signing_key(loom.token), "POST", "/dry-run", BODY))
    assert response.status_code == 401
    assert "no Loom token" in response.json()["message"]


def test_the_verifier_forgets_signatures_only_after_they_would_be_stale() -> None:
    key = signing_key("loom_m_" + "k" * 40)
    verifier = SignatureVerifier(key)
    headers = sign(key, "POST", "/dispatch-step", b"{}", now=1_000_000)
    verifier.verify(headers, "POST", "/dispatch-step", b"{}", now=1_000_000)
    with pytest.raises(SignatureRejected, match="replay"):
        verifier.verify(headers, "POST", "/dispatch-step", b"{}", now=1_000_299)
    with pytest.raises(SignatureRejected, match="stale"):
        verifier.verify(headers, "POST", "/dispatch-step", b"{}", now=1_000_000 + 601)
    malformed = {TIMESTAMP_HEADER: "soon", NONCE_HEADER: "n", SIGNATURE_HEADER: "v2=00"}
    with pytest.raises(SignatureRejected, match="Unix time"):
        verifier.verify(malformed, "POST", "/dispatch-step", b"{}", now=1_000_000)


@pytest.mark.parametrize(
    ("method", "path", "body", "now"),
    [
        ("PUT", "/dispatch-step", b"{}", 1_000_000),
        ("POST", "/dry-run", b"{}", 1_000_000),
        ("POST", "/dispatch-step/", b"{}", 1_000_000),
        ("POST", "/dispatch-step", b"{ }", 1_000_000),
    ],
    ids=["another-method", "another-route", "another-path", "another-body"],
)
def test_a_signature_covers_the_method_the_path_and_the_body(method: str, path: str, body: bytes, now: int) -> None:
    key = signing_key("loom_m_" + "k" * 40)
    headers = sign(key, "POST", "/dispatch-step", b"{}", now=1_000_000)
    with pytest.raises(SignatureRejected, match="does not match"):
        SignatureVerifier(key).verify(headers, method, path, body, now=now)


def test_a_signature_with_a_forged_timestamp_does_not_match() -> None:
    key = signing_key("loom_m_" + "k" * 40)
    headers = {**sign(key, "POST", "/dispatch-step", b"{}", now=1_000_000), TIMESTAMP_HEADER: "1000100"}
    with pytest.raises(SignatureRejected, match="does not match"):
        SignatureVerifier(key).verify(headers, "POST", "/dispatch-step", b"{}", now=1_000_100)


def test_a_v1_signature_over_the_body_alone_is_refused() -> None:
    key = signing_key("loom_m_" + "k" * 40)
    v1 = "v1=" + hmac.new(key, b"1000000.n.{}", hashlib.sha256).hexdigest()
    headers = {TIMESTAMP_HEADER: "1000000", NONCE_HEADER: "n", SIGNATURE_HEADER: v1}
    with pytest.raises(SignatureRejected, match="v2="):
        SignatureVerifier(key).verify(headers, "POST", "/dispatch-step", b"{}", now=1_000_000)


def test_a_dispatch_signature_replayed_against_the_dry_run_route_is_refused(loom: FakeLoom, migrator: Migrator) -> None:
    captured = sign(signing_key(loom.token), "POST", "/dispatch-step", BODY)
    replayed = post(migrator, captured)  # posts to /dry-run
    assert replayed.status_code == 401
    assert "does not match" in replayed.json()["message"]


# -- Loom's side: the real notifier signs with the key of the token that owns the Migration --------------------


@pytest.fixture
async def real_loom(
    store: SqlStore, access: AccessControl, credentials: Credentials
) -> AsyncIterator[tuple[httpx.AsyncClient, HttpMigratorNotifier]]:
    auth_store = SqlAuthStore(store.engine)

    async def signing_key(migration_id: str) -> bytes | None:
        return await asyncio.to_thread(auth_store.signing_key, migration_id)

    notifier = HttpMigratorNotifier(timeout_seconds=5, signing_keys=signing_key)
    service = LoomService.over(store, FakeEngine(), notifier, access)
    app = create_api(lambda: service)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://loom", auth=credentials.auth) as client:
        yield client, notifier
    await notifier.aclose()


def _migrator_for(token: str, loom: FakeLoom) -> Migrator:
    migrator = Migrator("greet", "Greet", "Say hello.", loom_url=loom.url, token=token, rediscover_every=None)
    migrator.step("hello")(_noop)
    migrator.dry_run("hello")(lambda ctx: ctx.skip())
    return migrator


async def test_loom_signs_its_dry_run_with_the_owning_tokens_key_and_the_sdk_accepts_it(
    real_loom: tuple[httpx.AsyncClient, HttpMigratorNotifier], credentials: Credentials, loom: FakeLoom
) -> None:
    api, _ = real_loom
    migrator = _migrator_for(credentials.migrator_token, loom)
    with migrator.serve_in_thread():
        announcement = (await migrator.announcement()).model_dump(mode="json")
        assert (await api.post("/api/registry/announce", json=announcement)).status_code == 200
        preview = await api.post("/api/migrations/greet/dry-run", json={"candidate": {"id": "x", "kind": "k"}})
    assert preview.status_code == 200, preview.text
    assert preview.json()["steps"] == [{"stepName": "hello", "skipped": True, "files": []}]


async def test_a_migrator_holding_another_token_refuses_looms_requests(
    real_loom: tuple[httpx.AsyncClient, HttpMigratorNotifier], credentials: Credentials, loom: FakeLoom
) -> None:
    api, notifier = real_loom
    impostor = _migrator_for("loom_m_" + "i" * 43, loom)
    with impostor.serve_in_thread():
        announcement = (await impostor.announcement()).model_dump(mode="json")
        assert (await api.post("/api/registry/announce", json=announcement)).status_code == 200
        preview = await api.post("/api/migrations/greet/dry-run", json={"candidate": {"id": "x", "kind": "k"}})
        assert preview.status_code == 502
        assert "401" in preview.json()["message"]
        with pytest.raises(DispatchRejected, match="401"):
            await notifier.dispatch_step(
                DispatchStepRequest(
                    migration_id="greet",
                    step_name="hello",
                    candidate=Candidate(id="x", kind="k"),
                    callback_id="greet__x",
                    event_name="step-hello",
                    migrator_app="greet",
                    migrator_url=impostor.migrator_url,
                )
            )


async def _noop(ctx: StepContext) -> None:
    return None


async def test_loom_joins_the_route_to_the_migrator_urls_path_and_signs_that_path() -> None:
    """A Migrator served under a path (behind a gateway) gets `{path}/dispatch-step`, and the signature says so."""
    key = signing_key("loom_m_" + "k" * 40)
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        SignatureVerifier(key).verify(request.headers, request.method, request.url.path, request.content)
        return httpx.Response(202)

    async def keys(migration_id: str) -> bytes:
        return key

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    notifier = HttpMigratorNotifier(client=client, signing_keys=keys)
    for migrator_url in ("http://127.0.0.1:9/greet", "http://127.0.0.1:9/greet/"):
        await notifier.dispatch_step(
            DispatchStepRequest(
                migration_id="greet",
                step_name="hello",
                candidate=Candidate(id="x", kind="k"),
                callback_id="greet__x",
                event_name="step-hello",
                migrator_app="greet",
                migrator_url=migrator_url,
            )
        )
    await client.aclose()
    assert [str(r.url) for r in seen] == ["http://127.0.0.1:9/greet/dispatch-step"] * 2
