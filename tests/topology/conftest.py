"""The scale-out topology as real processes: PostgreSQL and Redis (the machine's), a Temporal dev server of its own,
two web replicas (`loom up`, no worker) and two `loom worker`s, all on the same settings; a fake Migrator.

Every Loom process starts from a clean environment (no REFLEX_*, no LOOM_* of the caller's shell): `loom` must find
what it needs itself. The replicas share LOOM_PUBLIC_URL (replica A's), as replicas behind one load balancer do.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from loom_backend.execution.dev_server import free_port
from tests.credentials import new_credentials
from tests.e2e.harness import CHROMIUM, CHROMIUM_ARGS, E2E_PASSWORD
from tests.harness import ARTIFACTS, ROOT, FakeMigrator, LoomProcess, clean_env, temporal_server
from tests.postgres import fresh_database

POSTGRES_URL = os.environ.get("LOOM_TEST_POSTGRES_URL")
REDIS_URL = os.environ.get("LOOM_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
START_TIMEOUT = 300
OPERATOR = "topology-operator"

pytestmark = pytest.mark.skipif(not POSTGRES_URL, reason="LOOM_TEST_POSTGRES_URL is not set")


@dataclass
class Topology:
    replicas: list[LoomProcess]
    workers: list[LoomProcess]
    migrator: FakeMigrator
    database_url: str
    migrator_auth: dict[str, str]
    operator_auth: dict[str, str]

    def session_cookie(self) -> dict[str, Any]:
        response = httpx.post(
            f"{self.replicas[0].url}/api/auth/login", json={"username": OPERATOR, "password": E2E_PASSWORD}
        )
        assert response.status_code == 200, response.text
        return {"name": "loom_session", "value": response.cookies["loom_session"], "domain": "127.0.0.1", "path": "/"}


def _redis_flush() -> None:
    from redis import Redis

    client = Redis.from_url(REDIS_URL)
    client.flushdb()
    client.close()


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def topology() -> Iterator[Topology]:
    assert POSTGRES_URL
    ARTIFACTS.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="loom-topology-"))
    credentials = new_credentials()
    _redis_flush()
    with (
        fresh_database(POSTGRES_URL, prefix="loom_topology") as database_url,
        temporal_server(workdir, ARTIFACTS / "topology-temporal.log") as temporal_address,
        FakeMigrator().serving_in_thread() as migrator,
    ):
        ports = [free_port(), free_port()]
        common = {
            k: v
            for k, v in clean_env(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1").items()
            if not k.startswith("REFLEX_")
        }
        common.update(
            LOOM_DATABASE_URL=database_url,
            LOOM_REDIS_URL=REDIS_URL,
            LOOM_TEMPORAL_ADDRESS=temporal_address,
            LOOM_TEMPORAL_TASK_QUEUE=f"topology-{uuid.uuid4().hex[:8]}",
            LOOM_PUBLIC_URL=f"http://127.0.0.1:{ports[0]}",
            LOOM_DEMO="false",
            LOOM_BOOTSTRAP_TOKENS=credentials.env,
            LOOM_DISPATCH_BACKOFF_MAX_SECONDS="2",
        )
        loom = str(ROOT / ".venv/bin/loom")
        replicas = [
            LoomProcess(
                f"web-{name}",
                [loom, "up"],
                {**common, "LOOM_PORT": str(port), "LOOM_RUN_WORKER": "false", "LOOM_DATA_DIR": str(workdir / name)},
                ARTIFACTS / f"topology-web-{name}.log",
                port,
            )
            for name, port in zip("ab", ports, strict=True)
        ]
        workers = [
            LoomProcess(
                f"worker-{n}",
                [loom, "worker"],
                {**common, "LOOM_DATA_DIR": str(workdir / f"w{n}")},
                ARTIFACTS / f"topology-worker-{n}.log",
            )
            for n in (1, 2)
        ]
        # The schema first, as a deployment's release step does; then every process at once.
        subprocess.run([loom, "db", "upgrade"], cwd=ROOT, env={**common, "LOOM_DATA_DIR": str(workdir)}, check=True)
        try:
            for process in [*replicas, *workers]:
                process.start()
            for replica in replicas:
                replica.wait_serving(START_TIMEOUT)
            _add_operator(database_url)
            yield Topology(
                replicas,
                workers,
                migrator,
                database_url,
                {"Authorization": f"Bearer {credentials.migrator_token}"},
                {"Authorization": f"Bearer {credentials.operator_token}"},
            )
        finally:
            for process in [*replicas, *workers]:
                process.stop()
            shutil.rmtree(workdir, ignore_errors=True)


def _add_operator(database_url: str) -> None:
    from loom_backend.auth import AccessControl, Role
    from loom_backend.store.auth_store import SqlAuthStore
    from loom_backend.store.sql_store import create_db_engine

    engine = create_db_engine(database_url)
    try:
        AccessControl(SqlAuthStore(engine)).add_user(OPERATOR, Role.OPERATOR, E2E_PASSWORD)
    finally:
        engine.dispose()
