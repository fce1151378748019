"""The real Loom HTTP app in its own process, on the real Temporal server, for end-to-end tests of Migrators."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

from loom_backend.execution.dev_server import free_port
from tests.credentials import new_credentials

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def clean_env(**overrides: str) -> dict[str, str]:
    """This process's environment without any LOOM_* or MIGRATOR_URL setting of the caller's shell, plus `overrides`."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LOOM_") and k != "MIGRATOR_URL"}
    return {**inherited, **overrides}


class LiveLoom:
    """`python -m loom_backend.cli api` on a free port with its own SQLite file and task queue; its log in `log_path`.

    `credentials` were made valid at start (LOOM_BOOTSTRAP_TOKENS): give a Migrator `credentials.migrator_token`
    as LOOM_TOKEN, and call the API with `auth=credentials.auth`.
    """

    def __init__(self, temporal_address: str, data_dir: Path, operators: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / "loom-api.log"
        self.credentials = new_credentials()
        self.operator_tokens = {name: "loom_o_" + secrets.token_urlsafe(32) for name in operators}
        extra = "".join(f",operator:{name}:operator={token}" for name, token in self.operator_tokens.items())
        self.env = clean_env(
            LOOM_BOOTSTRAP_TOKENS=self.credentials.env + extra,
            LOOM_TEMPORAL_ADDRESS=temporal_address,
            LOOM_DATA_DIR=str(data_dir),
            LOOM_TEMPORAL_TASK_QUEUE=f"e2e-{uuid.uuid4().hex[:8]}",
            LOOM_DEMO="false",
        )
        self.process: subprocess.Popen[bytes] | None = None

    def as_operator(self, name: str) -> dict[str, str]:
        """Headers that authenticate as operator `name` (one of `operators`), so the event log records that name."""
        return {"Authorization": f"Bearer {self.operator_tokens[name]}"}

    async def __aenter__(self) -> LiveLoom:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "loom_backend.cli", "api", "--port", str(self.port)],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                if self.process.poll() is not None:
                    raise AssertionError(f"the Loom app exited with {self.process.returncode}:\n{self.log_tail()}")
                try:
                    if (await client.get(f"{self.url}/api/healthz")).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
        self.stop()
        raise AssertionError(f"the Loom app did not come up in 30 s:\n{self.log_tail()}")

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


async def wait_for(
    fetch: Callable[[], Awaitable[T]], predicate: Callable[[T], bool], what: str, timeout: float = 30.0
) -> T:
    """Poll `fetch` until `predicate` holds for its value and return that value; fail naming `what` and the last value."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await fetch()
        if predicate(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s; last seen: {value!r}")
        await asyncio.sleep(0.1)


def step_status(steps: dict[str, Any], name: str) -> str | None:
    """The status of Step `name` in a `GET .../steps` answer, or None when it has not started."""
    return next((s["status"] for s in steps["steps"] if s["stepName"] == name), None)


def step_result(steps: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in steps["steps"] if s["stepName"] == name)
