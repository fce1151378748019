"""The built Loom app for end-to-end runs; the Temporal dev server and the fake Migrator come from tests/harness.py.

Plain context managers, shared by the e2e fixtures and bench/board.py.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from loom_backend.execution.dev_server import free_port
from tests.harness import ARTIFACTS, ROOT, FakeMigrator, stop, temporal_server, wait_for

__all__ = [
    "ARTIFACTS",
    "ROOT",
    "FakeMigrator",
    "Loom",
    "fake_migrator_server",
    "loom_app",
    "temporal_server",
    "wait_for",
]

BUN = ROOT / ".tools/node_modules/bun/bin/bun.exe"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
APP_START_TIMEOUT = 240
# Chosen up front (LOOM_BOOTSTRAP_TOKENS): the fake Migrator's token and an operator token for API calls.
MIGRATOR_TOKEN = "e2e-migrator-" + "m" * 40
OPERATOR_TOKEN = "e2e-operator-" + "o" * 40
MIGRATOR_AUTH = {"Authorization": f"Bearer {MIGRATOR_TOKEN}"}
OPERATOR_AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
# The board's tests sign in as this operator (conftest.py); test_sign_in.py adds its own accounts.
E2E_OPERATOR = "e2e-operator"
# Only linked to, never opened: the candidate page's link to a Run's workflow is checked by its address.
TEMPORAL_UI_URL = "http://temporal-ui.invalid:8233/"
E2E_PASSWORD = "e2e-correct-horse-battery"


@dataclass
class Loom:
    """The running app, and how a test plays the Migrator against it (and an admin adding accounts)."""

    url: str
    migrator: FakeMigrator
    client: httpx.Client
    data_dir: Path

    def add_user(self, name: str, role: str, password: str = E2E_PASSWORD) -> None:
        """An account in the app's own database, as `loom user add` makes one."""
        from loom_backend.auth import AccessControl, Role
        from loom_backend.bootstrap import build_auth_store
        from loom_backend.settings import Settings

        store = build_auth_store(Settings(data_dir=self.data_dir))
        try:
            AccessControl(store).add_user(name, Role(role), password)
        finally:
            store.engine.dispose()  # type: ignore[attr-defined]

    def session_cookie(self, name: str, password: str = E2E_PASSWORD) -> dict[str, Any]:
        """Sign in through the API; the `loom_session` cookie as Playwright's storage state holds one."""
        response = httpx.post(f"{self.url}/api/auth/login", json={"username": name, "password": password})
        assert response.status_code == 200, response.text
        return {
            "name": "loom_session",
            "value": response.cookies["loom_session"],
            "domain": "127.0.0.1",
            "path": "/",
            "expires": -1,
            "httpOnly": True,
            "secure": False,
            "sameSite": "Lax",
        }

    def announce(
        self,
        migration_id: str,
        candidates: list[dict[str, Any]],
        steps: list[dict[str, Any]] | None = None,
        required_inputs: list[dict[str, Any]] | None = None,
    ) -> None:
        body = {
            "id": migration_id,
            "name": f"Upgrade base image ({migration_id})",
            "description": "Move every service to the hardened base image.",
            "overview": ["Bump the image tag", "Review", "Roll out"],
            "requiredInputs": required_inputs if required_inputs is not None else [],
            "steps": steps
            or [
                {"name": "bump-image", "migratorApp": "fake", "description": "Open a PR that bumps the image tag"},
                {
                    "name": "review",
                    "migratorApp": "fake",
                    "type": "manual-review",
                    "description": "An operator checks the rollout",
                    "instructions": "Check the dashboards, then approve.",
                },
            ],
            "candidates": candidates,
            "migratorUrl": self.migrator.url,
        }
        response = self.client.post("/api/registry/announce", json=body, headers=MIGRATOR_AUTH)
        assert response.status_code == 200, response.text

    def start(self, migration_id: str, candidate_id: str) -> None:
        """Start a Run through the operator API, as a script would."""
        response = self.client.post(
            f"/api/migrations/{migration_id}/candidates/{candidate_id}/start", json={}, headers=OPERATOR_AUTH
        )
        assert response.status_code == 202, response.text

    def callback(self, migration_id: str, candidate_id: str, step: str, status: str, **metadata: str) -> None:
        response = self.client.post(
            f"/api/event/{migration_id}__{candidate_id}",
            json={"stepName": step, "candidateId": candidate_id, "status": status, "metadata": metadata},
            headers=MIGRATOR_AUTH,
        )
        assert response.status_code == 202, response.text


def fake_migrator_server() -> contextlib.AbstractContextManager[FakeMigrator]:
    """The fake Migrator served from a thread: browser tests have no event loop of their own."""
    return FakeMigrator().serving_in_thread()


@contextlib.contextmanager
def loom_app(
    workdir: Path, temporal_address: str, migrator: FakeMigrator, log_name: str = "loom-app.log"
) -> Iterator[Loom]:
    """The app as `make run` starts it (`loom up`: the board built once, then served with the API inside by uvicorn on
    one port), with the test's Temporal server, so no embedded one and no demo Migrator. Benches measure this process."""
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    env = {
        **os.environ,
        "LOOM_PORT": str(port),
        "LOOM_DATA_DIR": str(workdir / "data"),
        "LOOM_TEMPORAL_ADDRESS": temporal_address,
        "LOOM_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "LOOM_DEMO": "false",
        "LOOM_TEMPORAL_UI_URL": TEMPORAL_UI_URL,
        # A Migrator that is away is retried every 2 s at most, for 2 min: long enough to watch, short enough to end.
        "LOOM_DISPATCH_RETRY_SECONDS": "120",
        "LOOM_DISPATCH_BACKOFF_MAX_SECONDS": "2",
        "REFLEX_BUN_PATH": str(BUN),
        "REFLEX_TELEMETRY_ENABLED": "false",
        "PYTHONUNBUFFERED": "1",
        "LOOM_BOOTSTRAP_TOKENS": f"migrator:fake={MIGRATOR_TOKEN},operator:e2e:admin={OPERATOR_TOKEN}",
    }
    log = open(ARTIFACTS / log_name, "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [str(ROOT / ".venv/bin/loom"), "up"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=url, timeout=60)
    try:

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"the app exited with {process.returncode}; see {ARTIFACTS / log_name}")
            return client.get("/api/healthz").status_code == 200 and client.get("/").status_code == 200

        wait_for(ready, APP_START_TIMEOUT, "the Loom app", interval=0.5)
        yield Loom(url, migrator, client, workdir / "data")
    finally:
        client.close()
        stop(process)
        log.close()
