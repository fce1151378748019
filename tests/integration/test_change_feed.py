"""The read model announces its committed writes: on PostgreSQL to every process LISTENing, on SQLite to its own."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from loom_backend.domain import CandidateStatus, ReadModelChange, RunChange, StepResult, StepStatus
from loom_backend.live import ChangeHub
from loom_backend.store.change_feed import follow_sqlite, listen_postgres
from loom_backend.store.sql_store import SqlStore
from tests.conftest import POSTGRES_URL
from tests.integration.test_store import announcement

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _step(candidate_id: str) -> RunChange:
    return RunChange(step_result=StepResult(step_name="s1", candidate_id=candidate_id, status=StepStatus.OPEN))


async def _until(subscription, wanted: ReadModelChange, timeout: float = 5.0) -> list[ReadModelChange]:
    seen: list[ReadModelChange] = []
    async with asyncio.timeout(timeout):
        while wanted not in seen:
            seen += await subscription.next(timeout)
    return seen


async def test_sqlite_writes_reach_the_process_feed_with_what_they_touched(tmp_path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'loom.db'}")
    store.upgrade_schema()
    hub = ChangeHub()
    with hub.subscribe() as page:
        source = asyncio.create_task(follow_sqlite(store, hub.publish, every_seconds=60))
        await asyncio.sleep(0.1)
        await asyncio.to_thread(store.announce, announcement(["a", "b"]), NOW)
        await _until(page, ReadModelChange("base-image"))
        await asyncio.to_thread(store.claim_candidate, "base-image", "a", {})
        await _until(page, ReadModelChange("base-image", "a", CandidateStatus.RUNNING))
        await asyncio.to_thread(store.apply_run_changes, "base-image__a", "base-image", "a", [_step("a")])
        await _until(page, ReadModelChange("base-image", "a"))
        source.cancel()
    store.engine.dispose()


@pytest.mark.skipif(not POSTGRES_URL, reason="LOOM_TEST_POSTGRES_URL is not set")
async def test_a_write_through_one_process_reaches_the_feed_of_another_on_postgresql(postgres_url: str) -> None:
    writer, reader = SqlStore(postgres_url), SqlStore(postgres_url)  # two processes' stores on one database
    writer.upgrade_schema()
    hub = ChangeHub()
    connected = asyncio.Event()
    with hub.subscribe() as page:
        source = asyncio.create_task(listen_postgres(reader.url, hub.publish, connected))
        await asyncio.wait_for(connected.wait(), 10)
        await asyncio.to_thread(writer.announce, announcement(["a"], id="mig-pg-feed"), NOW)
        await asyncio.to_thread(writer.claim_candidate, "mig-pg-feed", "a", {})
        done = [RunChange(candidate_status=CandidateStatus.COMPLETED)]
        await asyncio.to_thread(writer.apply_run_changes, "mig-pg-feed__a", "mig-pg-feed", "a", done)
        seen = await _until(page, ReadModelChange("mig-pg-feed", "a", CandidateStatus.COMPLETED))
        source.cancel()
    assert seen[:2] == [ReadModelChange("mig-pg-feed"), ReadModelChange("mig-pg-feed", "a", CandidateStatus.RUNNING)]
    writer.engine.dispose()
    reader.engine.dispose()
