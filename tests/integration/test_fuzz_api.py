"""Property-based fuzz of the whole OpenAPI surface (schemathesis, in-process over ASGI): no request, however odd,
gets a 5xx, an undeclared status code, or a body off the declared schema."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
from loom_backend.service import LoomService
from loom_backend.store.auth_store import SqlAuthStore
from loom_backend.store.sql_store import SqlStore
from tests.credentials import Credentials, is_migrator_route, new_credentials
from tests.fakes import FakeEngine, FakeNotifier
from tests.integration.test_registry_api import announcement

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def build() -> tuple[Any, Credentials]:
    """The API on a real SQLite store with one announced Migration it may call, and credentials for it."""
    path = Path(tempfile.mkdtemp(prefix="loom-fuzz-")) / "loom.db"
    store = SqlStore(f"sqlite:///{path}")
    store.upgrade_schema()
    access = AccessControl(SqlAuthStore(store.engine))
    credentials = new_credentials().grant(access)
    access.add_user("fuzz-admin", Role.ADMIN, "correct horse battery")
    owner = access.bearer(credentials.migrator_token)
    assert owner is not None
    access.claim_migration(owner, "base-image")
    store.announce(MigrationAnnouncement.model_validate(announcement(n=5)), datetime.now(UTC))
    service = LoomService.over(store, FakeEngine(), FakeNotifier(dry_run_result=DryRunResult(steps=[])), access)
    app = create_api(lambda: service)
    return app, credentials


# Built at collection, as schemathesis needs the schema to generate one test per operation.
APP, CREDENTIALS = build()
schema = schemathesis.openapi.from_asgi("/api/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
def test_no_request_gets_a_5xx_or_an_answer_off_the_schema(case: Any) -> None:
    """Each operation is called as its caller would: Migrator routes with the Migrator token, the rest as an admin."""
    migrator = is_migrator_route(case.method, case.path)
    headers = CREDENTIALS.migrator_headers if migrator else CREDENTIALS.operator_headers
    case.call_and_validate(headers=headers, checks=CHECKS)
