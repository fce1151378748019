"""The built Loom app in a real browser: the session's Temporal dev server, one app process and one fake Migrator.

The fake Migrator is a real HTTP server: tests see what Loom dispatched to it and post its callbacks themselves.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    E2E_OPERATOR,
    ROOT,
    FakeMigrator,
    Loom,
    fake_migrator_server,
    loom_app,
)

__all__ = ["ARTIFACTS", "ROOT", "Loom", "unique_id"]


def unique_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture(scope="session")
def operator_session(loom: Loom) -> dict[str, Any]:
    """One sign-in for the whole session: every browser context starts with this operator's cookie."""
    loom.add_user(E2E_OPERATOR, "operator")
    return {"cookies": [loom.session_cookie(E2E_OPERATOR)], "origins": []}


@pytest.fixture(scope="session")
def browser_context_args(
    browser_context_args: dict[str, Any], loom: Loom, operator_session: dict[str, Any]
) -> dict[str, Any]:
    return {
        **browser_context_args,
        "viewport": {"width": 1280, "height": 800},
        "base_url": loom.url,
        "storage_state": operator_session,
    }


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="loom-e2e-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def fake_migrator() -> Iterator[FakeMigrator]:
    with fake_migrator_server() as migrator:
        yield migrator


@pytest.fixture(scope="session")
def loom(workdir: Path, temporal_address: str, fake_migrator: FakeMigrator) -> Iterator[Loom]:
    with loom_app(workdir, temporal_address, fake_migrator) as app:
        yield app
