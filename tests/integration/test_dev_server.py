"""The embedded Temporal server Loom starts is started again when it dies, with the Runs it held."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from loom_backend.execution.dev_server import _answers, embedded_temporal, free_port
from loom_backend.settings import Settings
from tests.harness import eventually


def _server_pids(db_file: Path) -> list[int]:
    """The processes running a dev server on this state file (found by their command line)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if str(db_file).encode() in cmdline:
                pids.append(int(entry.name))
    return pids


async def test_a_killed_embedded_temporal_server_is_started_again_on_the_same_address(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path)
    async with embedded_temporal(settings, port=free_port(), data_dir=tmp_path) as address:
        (first,) = _server_pids(tmp_path / "temporal.db")
        os.kill(first, signal.SIGKILL)
        await eventually(lambda: _server_pids(tmp_path / "temporal.db") not in ([], [first]), timeout=30)
        deadline = asyncio.get_running_loop().time() + 60
        while not await _answers(address, settings.temporal_namespace, timeout=2.0):
            assert asyncio.get_running_loop().time() < deadline, "the restarted server never answered"
            await asyncio.sleep(0.2)
        (second,) = _server_pids(tmp_path / "temporal.db")
        assert second != first
    assert _server_pids(tmp_path / "temporal.db") == []  # stopped on exit
