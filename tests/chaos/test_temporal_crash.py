"""SIGKILL of the Temporal server the app uses; started again on the same port and state, the Runs go on."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.scene import scene
from tests.harness import TemporalServer

OUTAGE_SECONDS = 10  # longer than the Temporal client retries a call: Loom itself sees it down


@pytest.fixture
def temporal(tmp_path: Path) -> Iterator[TemporalServer]:
    """A Temporal server of this test's own: the session's one must not die under the other tests."""
    server = TemporalServer(tmp_path).start()
    try:
        yield server
    finally:
        server.stop()


async def test_a_killed_temporal_server_restarts_and_every_run_finishes_with_each_callback_applied_once(
    temporal: TemporalServer, database_url: str, tmp_path: Path
) -> None:
    async with scene(temporal.address, database_url, tmp_path) as stage:
        await stage.under_way()
        temporal.kill()
        await asyncio.sleep(OUTAGE_SECONDS)  # the outage: callbacks and dispatches meanwhile find no Temporal
        temporal.start()
        await stage.finished()
    stage.audit()
