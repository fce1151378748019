"""The change feed inside a process: which pages a change concerns, and the fan-out to every open page."""

from __future__ import annotations

import asyncio
import threading

from loom_backend.domain import CandidateStatus, ReadModelChange
from loom_backend.live import MAX_PENDING, ChangeHub


def test_a_change_concerns_its_migration_and_candidate_only() -> None:
    change = ReadModelChange("m", "c1", CandidateStatus.RUNNING)
    assert change.concerns(None)
    assert change.concerns("m")
    assert change.concerns("m", "c1")
    assert not change.concerns("m", "c2")
    assert not change.concerns("other")
    assert ReadModelChange("m").concerns("m", "c2")
    assert ReadModelChange().concerns("other", "c2")


def test_a_change_survives_its_notification_payload_and_garbage_means_anything() -> None:
    change = ReadModelChange("m", "c1", CandidateStatus.COMPLETED)
    assert ReadModelChange.from_payload(change.to_payload()) == change
    assert ReadModelChange.from_payload(ReadModelChange("m").to_payload()) == ReadModelChange("m")
    assert ReadModelChange.from_payload("not json") == ReadModelChange()


async def test_every_subscriber_gets_each_change_published_from_any_thread() -> None:
    hub = ChangeHub()
    with hub.subscribe() as first, hub.subscribe() as second:
        thread = threading.Thread(target=hub.publish, args=(ReadModelChange("m", "c"),))
        thread.start()
        thread.join()
        assert await first.next(5) == [ReadModelChange("m", "c")]
        assert await second.next(5) == [ReadModelChange("m", "c")]
        assert await first.next(0.01) == []
    assert hub.subscribers == 0


async def test_a_subscriber_far_behind_is_told_anything_changed() -> None:
    hub = ChangeHub()
    with hub.subscribe() as slow:
        for i in range(MAX_PENDING + 5):
            hub.publish(ReadModelChange("m", f"c{i}"))
        await asyncio.sleep(0)
        changes = await slow.next(1)
    assert ReadModelChange() in changes and len(changes) < MAX_PENDING
