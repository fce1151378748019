"""Property-based fuzz of the whole OpenAPI surface (schemathesis, in-process over ASGI): no request, however odd,
gets a 5xx, an undeclared status code, or a body off the declared schema."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from loom_backend.api import create_api
from loom_backend.auth import AccessControl, Role
from loom_backend.domain import DryRunResult, MigrationAnnouncement
from loom_backend.notifications import WebhookAdmin
from loom_backend.service import LoomService
from loom_backend.store.auth_store import SqlAuthStore
from loom_backend.store.sql_store import SqlStore
from loom_backend.store.webhook_store import SqlWebhookStore
from loom_backend.url_allow import MigratorUrlPolicy
from loom_backend.webhook_client import HttpWebhookSender
from tests.credentials import Credentials, is_migrator_route, new_credentials
from tests.fakes import FakeEngine, FakeNotifier
from tests.integration.test_registry_api import announcement

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@dataclass
class Backend:
    """What the API calls per request: filled by the `backend` fixture, so importing this module builds no database."""

    service: LoomService | None = None
    credentials: Credentials | None = None


BACKEND = Backend()
# The schema (one test per operation) is read at collection from an app whose backend the fixture provides.
APP = create_api(lambda: BACKEND.service)  # type: ignore[arg-type,return-value]
schema = schemathesis.openapi.from_asgi("/api/openapi.json", APP)


async def _no_addresses(host: str) -> list[str]:
    return []


@pytest.fixture(scope="module", autouse=True)
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """A real SQLite store with one announced Migration the API may call, and credentials for it; closed after."""
    store = SqlStore(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'loom.db'}")
    store.upgrade_schema()
    access = AccessControl(SqlAuthStore(store.engine))
    credentials = new_credentials().grant(access)
    access.add_user("fuzz-admin", Role.ADMIN, "correct horse battery")
    owner = access.bearer(credentials.migrator_token)
    assert owner is not None
    access.claim_migration(owner, "base-image")
    store.announce(MigrationAnnouncement.model_validate(announcement(n=5)), datetime.now(UTC))
    # Webhook URLs resolve to nothing here (no DNS lookups of fuzzed names); 127.0.0.1 is allowed.
    sender = HttpWebhookSender(MigratorUrlPolicy("127.0.0.0/8", resolver=_no_addresses))
    BACKEND.service = LoomService.over(
        store,
        FakeEngine(),
        FakeNotifier(dry_run_result=DryRunResult(steps=[])),
        access,
        webhooks=WebhookAdmin(SqlWebhookStore(store), sender),
    )
    BACKEND.credentials = credentials
    yield BACKEND
    BACKEND.service = BACKEND.credentials = None
    store.engine.dispose()


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_no_request_gets_a_5xx_or_an_answer_off_the_schema(case: Any, backend: Backend) -> None:
    """Each operation is called as its caller would: Migrator routes with the Migrator token, the rest as an admin."""
    credentials = backend.credentials
    assert credentials is not None
    migrator = is_migrator_route(case.method, case.path)
    headers = credentials.migrator_headers if migrator else credentials.operator_headers
    case.call_and_validate(headers=headers, checks=CHECKS)
