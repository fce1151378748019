"""Live pages woken by the same changes share their reads: one query per process, not one per open tab."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from sqlalchemy import event

from loom_backend.auth import AccessControl
from loom_backend.domain import CandidateStatus, DryRunResult, ReadModelChange
from loom_backend.live import ChangeHub
from loom_backend.service import LoomService
from loom_backend.store.sql_store import SqlStore
from tests.fakes import VIEWER, FakeEngine, FakeNotifier
from tests.integration.test_store import announcement

NOW = datetime(2026, 1, 1, tzinfo=UTC)
TABS = 20


def counting(store: SqlStore) -> list[str]:
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute", lambda _c, _k, sql, *_: statements.append(sql))
    return statements


def service(store: SqlStore, access: AccessControl, hub: ChangeHub) -> LoomService:
    notifier = FakeNotifier(dry_run_result=DryRunResult(steps=[]))
    return LoomService.over(store, FakeEngine(), notifier, access, changes=hub)


async def running(loom: LoomService) -> list[str]:
    page = await loom.list_candidates(VIEWER, "base-image", status=CandidateStatus.RUNNING, limit=50)
    return [c.id for c in page.candidates]


async def test_tabs_woken_by_one_change_read_the_board_once(store: SqlStore, access: AccessControl) -> None:
    store.announce(announcement(["a", "b", "c"]), NOW)
    hub = ChangeHub()
    loom = service(store, access, hub)
    await running(loom)  # connections opened: what follows counts queries only
    statements = counting(store)

    async def tab() -> list[str]:
        with loom.sharing_reads():
            return await running(loom)

    alone = len(statements)
    await tab()
    one_tab = len(statements) - alone
    assert await tab() == [] and len(statements) - alone == one_tab  # nothing changed: nothing asked again
    hub.publish(ReadModelChange("base-image", "a"))  # a change wakes every tab
    answers = await asyncio.gather(*(tab() for _ in range(TABS)))
    assert answers == [[]] * TABS
    assert len(statements) - alone - one_tab == one_tab  # twenty tabs, the queries of one


async def test_a_change_published_makes_the_next_shared_read_fresh(store: SqlStore, access: AccessControl) -> None:
    store.announce(announcement(["a", "b"]), NOW)
    hub = ChangeHub()
    loom = service(store, access, hub)
    with loom.sharing_reads():
        assert await running(loom) == []
        store.claim_candidate("base-image", "a", {})
        assert await running(loom) == []  # nothing published yet: the answer of this generation
        hub.publish(ReadModelChange("base-image", "a", CandidateStatus.RUNNING))  # what the feed does on commit
        assert await running(loom) == ["a"]


async def test_reads_outside_a_live_reload_are_never_shared(store: SqlStore, access: AccessControl) -> None:
    store.announce(announcement(["a", "b"]), NOW)
    loom = service(store, access, ChangeHub())
    assert await running(loom) == []
    store.claim_candidate("base-image", "a", {})
    assert await running(loom) == ["a"]  # nothing published, yet an action's own reload sees its write at once


async def test_a_failed_shared_read_fails_every_tab_and_is_not_kept(store: SqlStore, access: AccessControl) -> None:
    loom = service(store, access, ChangeHub())

    async def tab() -> BaseException | list[str]:
        with loom.sharing_reads():
            try:
                return await running(loom)
            except Exception as exc:
                return exc

    answers = await asyncio.gather(*(tab() for _ in range(3)))
    assert all(type(a).__name__ == "MigrationNotFound" for a in answers), answers
    store.announce(announcement(["a"]), NOW)
    loom.changes.publish(ReadModelChange("base-image"))  # type: ignore[union-attr]
    assert await tab() == []


async def test_tabs_asking_at_once_share_the_rollout_status_yet_a_later_ask_sees_a_new_one(
    store: SqlStore, access: AccessControl
) -> None:
    """A rollout writes its status with no change of its own: shared only by tabs asking while one read is out."""
    store.announce(announcement(["a"]), NOW)
    loom = service(store, access, ChangeHub())
    await loom.rollout_status(VIEWER, "base-image")  # connections opened: what follows counts queries only
    statements = counting(store)

    async def tab() -> int | None:
        with loom.sharing_reads():
            return (await loom.rollout_status(VIEWER, "base-image")).policy and 1

    await tab()  # the Migration's own read is shared by generation from now on
    before = len(statements)
    await tab()
    lone = len(statements) - before
    assert await asyncio.gather(*(tab() for _ in range(TABS))) == [None] * TABS
    assert lone > 0 and len(statements) - before - lone == lone  # twenty tabs at once, the queries of one
    store.set_rollout_policy("base-image", {"max_running": 2})  # no change is published for it
    assert await tab() == 1


async def test_tabs_of_one_tick_share_a_read_while_writes_go_on_yet_see_every_change_they_took(
    store: SqlStore, access: AccessControl
) -> None:
    store.announce(announcement(["a", "b"]), NOW)
    hub = ChangeHub()
    loom = service(store, access, hub)
    loom.clock = lambda: NOW  # the stuck rule's moment is part of the query: one second for the whole test
    await running(loom)
    statements = counting(store)
    with hub.subscribe() as early, hub.subscribe() as late:
        store.claim_candidate("base-image", "a", {})
        hub.publish(ReadModelChange("base-image", "a", CandidateStatus.RUNNING))
        await early.next(1.0)
        with loom.sharing_reads(early.seen):
            assert await running(loom) == ["a"]
        asked = len(statements)
        hub.publish(ReadModelChange("other-migration"))  # the generation moves on: another page's write
        await late.next(1.0)  # `late` took "a" too, and the other write
        with loom.sharing_reads(early.seen):
            assert await running(loom) == ["a"]
        assert len(statements) == asked  # as fresh as what `early` has taken: shared although the generation moved
        store.claim_candidate("base-image", "b", {})
        hub.publish(ReadModelChange("base-image", "b", CandidateStatus.RUNNING))
        await late.next(1.0)
        with loom.sharing_reads(late.seen):
            assert await running(loom) == ["a", "b"]  # a tab that took the change reads anew
