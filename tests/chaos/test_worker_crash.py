"""SIGKILL of a `loom worker` running apart from the app; a new worker picks the Runs up where they were."""

from __future__ import annotations

from pathlib import Path

from tests.chaos.scene import scene


async def test_a_killed_worker_restarts_and_every_run_finishes_with_each_callback_applied_once(
    temporal_address: str, database_url: str, tmp_path: Path
) -> None:
    async with scene(temporal_address, database_url, tmp_path, separate_worker=True) as stage:
        assert stage.worker is not None
        await stage.under_way()
        stage.worker.kill()
        stage.worker.start()
        await stage.finished()
    stage.audit()
