"""SIGKILL of the app process (API and worker in one) with Runs in flight; the restarted app finishes them all."""

from __future__ import annotations

from pathlib import Path

from tests.chaos.scene import scene


async def test_a_killed_app_restarts_and_every_run_finishes_with_each_callback_applied_once(
    temporal_address: str, database_url: str, tmp_path: Path
) -> None:
    async with scene(temporal_address, database_url, tmp_path) as stage:
        await stage.under_way()
        stage.app.kill()
        await stage.app.start()
        await stage.finished()
    stage.audit()
