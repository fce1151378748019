"""The store's queries behind the board: the live activity marker, kinds, and the "Needs me" queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from loom_backend.auth import AccessControl
from loom_backend.domain import (
    CandidateStatus,
    DispatchRetry,
    EventType,
    StepEvent,
    StepResult,
    StepStatus,
    run_id,
)
from loom_backend.service import LoomService
from loom_backend.store.auth_store import SqlAuthStore
from loom_backend.store.sql_store import SqlStore
from tests.fakes import VIEWER, FakeEngine, FakeNotifier
from tests.integration.test_store import NOW, announcement


def _result(cid: str, step: str, status: StepStatus, at: datetime) -> StepResult:
    return StepResult(step_name=step, candidate_id=cid, status=status, started_at=at, updated_at=at)


def _running(store: SqlStore, cid: str, step: str, status: StepStatus, at: datetime) -> None:
    store.claim_candidate("base-image", cid, {})
    store.save_step_result(run_id("base-image", cid), "base-image", _result(cid, step, status, at))


def test_activity_marker_changes_on_every_event_step_result_and_candidate_change(store: SqlStore) -> None:
    store.announce(announcement(["a", "b"]), NOW)
    markers = [store.activity_marker("base-image")]
    store.claim_candidate("base-image", "a", {})
    markers.append(store.activity_marker("base-image"))
    store.save_step_result(run_id("base-image", "a"), "base-image", _result("a", "bump", StepStatus.IN_PROGRESS, NOW))
    markers.append(store.activity_marker("base-image"))
    event = StepEvent(
        run_id=run_id("base-image", "a"),
        migration_id="base-image",
        candidate_id="a",
        event_type=EventType.STEP_UPDATED,
        created_at=NOW,
    )
    store.append_event(event, key="e1")
    markers.append(store.activity_marker("base-image"))
    store.announce(announcement(["a"]), NOW)
    markers.append(store.activity_marker("base-image"))
    assert len(set(markers)) == len(markers)
    assert store.activity_marker("base-image") == markers[-1]


def test_activity_marker_of_one_migration_ignores_another(store: SqlStore) -> None:
    store.announce(announcement(["a"]), NOW)
    store.announce(announcement(["x"], id="other"), NOW)
    before = store.activity_marker("base-image")
    everything = store.activity_marker()
    store.claim_candidate("other", "x", {})
    assert store.activity_marker("base-image") == before
    assert store.activity_marker() != everything


def test_candidate_kinds_are_distinct_and_sorted(store: SqlStore) -> None:
    data = announcement(["a", "b", "c"])
    data.candidates[1].kind = "application"
    store.announce(data, NOW)
    assert store.candidate_kinds("base-image") == ["application", "service"]


def test_attention_steps_list_reviews_failures_and_old_open_prs_oldest_first(store: SqlStore) -> None:
    store.announce(announcement(["review", "failed", "old-pr", "new-pr", "working", "cancelled"]), NOW)
    _running(store, "review", "review", StepStatus.AWAITING_REVIEW, NOW - timedelta(hours=1))
    _running(store, "failed", "bump", StepStatus.FAILED, NOW - timedelta(hours=3))
    _running(store, "old-pr", "bump", StepStatus.OPEN, NOW - timedelta(hours=30))
    _running(store, "new-pr", "bump", StepStatus.OPEN, NOW - timedelta(hours=2))
    _running(store, "working", "bump", StepStatus.IN_PROGRESS, NOW - timedelta(hours=50))
    _running(store, "cancelled", "bump", StepStatus.FAILED, NOW - timedelta(hours=40))
    store.set_candidate_status("base-image", "cancelled", CandidateStatus.NOT_STARTED)

    waiting = store.attention_steps(NOW - timedelta(hours=24))

    assert [(mid, s.candidate_id, s.status) for mid, s in waiting] == [
        ("base-image", "old-pr", StepStatus.OPEN),
        ("base-image", "failed", StepStatus.FAILED),
        ("base-image", "review", StepStatus.AWAITING_REVIEW),
    ]


async def test_needs_me_names_the_migration_and_why_each_step_waits(store: SqlStore) -> None:
    store.announce(announcement(["review", "old-pr"]), NOW)
    _running(store, "review", "review", StepStatus.AWAITING_REVIEW, NOW - timedelta(hours=1))
    _running(store, "old-pr", "bump", StepStatus.OPEN, NOW - timedelta(hours=30))
    access = AccessControl(SqlAuthStore(store.engine))
    service = LoomService.over(
        store, FakeEngine(), FakeNotifier(), access, clock=lambda: NOW.astimezone(UTC), open_pr_attention_hours=24
    )

    waiting = await service.needs_me(VIEWER)

    assert [(w.step.candidate_id, w.reason, w.migration_name) for w in waiting] == [
        ("old-pr", "open_pr", "Upgrade base image"),
        ("review", "review", "Upgrade base image"),
    ]
    assert waiting[0].waiting_since == NOW - timedelta(hours=30)


def test_the_board_page_carries_the_dispatch_retry_of_each_candidates_current_step(store: SqlStore) -> None:
    """The board shows "Migrator unreachable" from the page it already reads: no query per card."""
    store.announce(announcement(["away", "fine", "failed"]), NOW)
    retry = DispatchRetry(attempt=3, error="503 Service Unavailable", next_attempt_at=NOW + timedelta(seconds=40))
    rid = run_id("base-image", "away")
    store.claim_candidate("base-image", "away", {})
    store.save_step_result(rid, "base-image", _result("away", "bump", StepStatus.MERGED, NOW - timedelta(hours=1)))
    waiting = _result("away", "review", StepStatus.IN_PROGRESS, NOW).model_copy(update={"metadata": retry.metadata()})
    store.save_step_result(rid, "base-image", waiting)
    _running(store, "fine", "bump", StepStatus.IN_PROGRESS, NOW)
    _running(store, "failed", "bump", StepStatus.FAILED, NOW)

    cards = {c.id: c for c in store.list_candidates("base-image").candidates}
    assert cards["away"].current_step == "review"
    assert cards["away"].dispatch_retry == retry
    assert cards["fine"].dispatch_retry is None and cards["failed"].dispatch_retry is None
