"""LOOM_MIGRATOR_URL_ALLOW: which Migrator URLs Loom calls, with DNS answered by a hand-written fake."""

from __future__ import annotations

import pytest

from loom_backend import errors
from loom_backend.domain import Candidate, DispatchStepRequest, DryRunRequest
from loom_backend.migrator_client import DispatchRejected, HttpMigratorNotifier
from loom_backend.url_allow import MigratorUrlPolicy, UrlRefused


class FakeDns:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str) -> list[str]:
        self.asked.append(host)
        if host not in self.answers:
            raise OSError(f"unknown host {host}")
        return self.answers[host]


DNS = FakeDns(
    {
        "localhost": ["127.0.0.1", "::1"],
        "migrator.svc.local": ["10.1.2.3"],
        "public.example": ["93.184.216.34"],
        "rebound.example": ["169.254.169.254"],
        "sneaky.svc.local": ["169.254.10.10"],
    }
)


def policy(patterns: str | None = None) -> MigratorUrlPolicy:
    return MigratorUrlPolicy(patterns, resolver=DNS) if patterns is not None else MigratorUrlPolicy(resolver=DNS)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8050",
        "http://localhost:8050",
        "http://[::1]:9000",
        "http://10.20.30.40",
        "http://172.16.5.5:80",
        "http://192.168.1.10/base",
        "http://migrator.svc.local:8080",
    ],
)
async def test_the_default_allows_loopback_and_private_addresses(url: str) -> None:
    await policy().check(url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data", "link-local or cloud metadata"),
        ("http://169.254.1.1:8080", "link-local or cloud metadata"),
        ("http://[fe80::1]:80", "link-local or cloud metadata"),
        ("http://[fd00:ec2::254]/", "link-local or cloud metadata"),
        ("http://[::ffff:169.254.169.254]/", "link-local or cloud metadata"),
        ("http://metadata.google.internal/computeMetadata/v1", "cloud metadata address"),
        ("http://rebound.example", "link-local or cloud metadata"),
    ],
)
async def test_link_local_and_metadata_addresses_are_always_refused_even_when_allowing_everything(
    url: str, reason: str
) -> None:
    for patterns in (None, "*", "169.254.0.0/16,fe80::/10,fd00::/8,*.internal,rebound.example"):
        with pytest.raises(UrlRefused, match=reason):
            await policy(patterns).check(url)


async def test_a_public_address_is_refused_by_default_naming_the_setting() -> None:
    with pytest.raises(UrlRefused, match="LOOM_MIGRATOR_URL_ALLOW"):
        await policy().check("http://public.example")
    with pytest.raises(UrlRefused, match="LOOM_MIGRATOR_URL_ALLOW"):
        await policy().check("http://8.8.8.8")


async def test_host_names_and_wildcards_allow_by_name_but_not_to_link_local_addresses() -> None:
    allow = policy("*.example,10.0.0.0/8")
    await allow.check("http://public.example:8443")
    with pytest.raises(UrlRefused, match="not allowed"):
        await allow.check("http://127.0.0.1")
    with pytest.raises(UrlRefused, match="link-local"):
        await policy("*.svc.local").check("http://sneaky.svc.local")


async def test_a_host_that_does_not_resolve_is_refused() -> None:
    with pytest.raises(UrlRefused, match="could not be resolved"):
        await policy().check("http://nowhere.invalid")


def test_a_malformed_pattern_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="LOOM_MIGRATOR_URL_ALLOW"):
        MigratorUrlPolicy("10.0.0.0/8,not a host!")


async def test_the_notifier_refuses_at_announce_naming_migrator_url_and_never_dispatches_a_refused_address() -> None:
    sent: list[str] = []

    class NoNetwork:
        async def post(self, url: str, **_: object) -> None:
            sent.append(url)
            raise AssertionError("a refused address must never get a request")

    notifier = HttpMigratorNotifier(url_policy=policy(), client=NoNetwork())  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidInput) as refused:
        await notifier.check_url("http://169.254.169.254")
    assert refused.value.field == "migratorUrl"
    request = DispatchStepRequest(
        migration_id="m",
        step_name="s",
        candidate=Candidate(id="c", kind="k"),
        callback_id="m__c",
        event_name="step-s",
        migrator_app="a",
        migrator_url="http://public.example",
    )
    with pytest.raises(DispatchRejected, match="LOOM_MIGRATOR_URL_ALLOW"):
        await notifier.dispatch_step(request)
    with pytest.raises(errors.InvalidInput, match="link-local"):
        await notifier.dry_run(
            "http://rebound.example", DryRunRequest(migration_id="m", candidate=request.candidate, steps=[])
        )
    assert sent == []
