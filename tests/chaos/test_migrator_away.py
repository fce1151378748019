"""The Migrator answers 503 for longer than the old retry window (5 attempts, ~15 s); the Runs wait and resume.

With LOOM_DISPATCH_BACKOFF_MAX_SECONDS=2 the outage is a dozen attempts per Step; each Step waiting shows the
retry notice, and once the Migrator is back every Run finishes without an operator's Retry.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from loom_backend.execution.messages import MIGRATOR_UNAVAILABLE
from tests.chaos.scene import CANDIDATES, scene

OUTAGE_SECONDS = 22  # the old window failed a Step after 5 attempts, about 15 s


async def test_a_migrator_away_longer_than_the_old_window_fails_no_step_and_every_run_finishes(
    temporal_address: str, database_url: str, tmp_path: Path
) -> None:
    async with scene(temporal_address, database_url, tmp_path, dispatch_backoff_max_seconds="2") as stage:
        await stage.under_way()
        stage.migrator.answer, stage.migrator.answer_text = 503, "migrator redeploying"
        notices: dict[str, tuple[int, str]] = {}  # per Candidate: the highest retry attempt seen, and its error
        loop = asyncio.get_running_loop()
        away_until = loop.time() + OUTAGE_SECONDS
        while loop.time() < away_until:
            for c in CANDIDATES:
                for step in await stage.steps(c):
                    metadata = step["metadata"]
                    if "dispatchRetryAttempt" in metadata and step["status"] == "in_progress":
                        attempt = int(metadata["dispatchRetryAttempt"])
                        if attempt > notices.get(c, (0, ""))[0]:
                            notices[c] = (attempt, metadata["dispatchRetryError"])
            await asyncio.sleep(1)
        refused_attempts = stage.migrator.attempts - len(stage.migrator.dispatches)
        stage.migrator.answer = 202
        await stage.finished()
        for c in CANDIDATES:  # the notices went once the Migrator took the Steps
            assert not any("dispatchRetryAttempt" in s["metadata"] for s in await stage.steps(c))
        failures = await stage.dispatch_failures()
    assert set(failures) == {MIGRATOR_UNAVAILABLE}, failures
    assert max(attempt for attempt, _ in notices.values()) > 5, f"more attempts than the old window allowed: {notices}"
    assert len(notices) >= len(CANDIDATES) // 2, f"the Runs in flight showed the retry: {notices}"
    assert all("503" in error and "migrator redeploying" in error for _, error in notices.values())
    assert refused_attempts > len(CANDIDATES)
    stage.audit()
