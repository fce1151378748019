"""The webhook rules without HTTP or a database: what a hook hears, the digest's text, ids taken past gaps, retries."""

from __future__ import annotations

from datetime import UTC, datetime

from loom_backend.domain import CandidateView, EventType, StepEvent, StepStatus
from loom_backend.webhooks import (
    NotificationKind,
    WebhookTarget,
    digest,
    hears,
    notification_kind,
    retry_delay,
    retryable,
    settled_through,
    stuck_event,
)

NOW = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)


def event(event_type: EventType, status: str | None = None, candidate_id: str = "svc", **meta: str) -> StepEvent:
    return StepEvent(
        id=1,
        run_id=f"m__{candidate_id}",
        migration_id="m",
        candidate_id=candidate_id,
        step_name="bump",
        event_type=event_type,
        status=status,
        metadata=meta,
        created_at=NOW,
    )


def target(*kinds: NotificationKind, migration_id: str | None = None, **filter: str) -> WebhookTarget:
    return WebhookTarget("h", "http://x", frozenset(kinds or NotificationKind), migration_id, filter, b"k", 0)


FAILED = event(EventType.STEP_COMPLETED, StepStatus.FAILED, error="exit 1")


def test_only_failed_steps_reviews_waiting_rollout_pauses_and_completions_are_notifications() -> None:
    assert notification_kind(FAILED) is NotificationKind.STEP_FAILED
    assert notification_kind(event(EventType.STEP_COMPLETED, StepStatus.COMPLETED)) is None
    assert (
        notification_kind(event(EventType.STEP_UPDATED, StepStatus.AWAITING_REVIEW)) is NotificationKind.REVIEW_WAITING
    )
    assert notification_kind(event(EventType.STEP_UPDATED, StepStatus.OPEN)) is None
    assert notification_kind(event(EventType.ROLLOUT_PAUSED, candidate_id="")) is NotificationKind.ROLLOUT_PAUSED
    assert notification_kind(event(EventType.ROLLOUT_RESUMED, candidate_id="")) is None


def test_a_filter_keeps_other_teams_candidates_out_but_lets_migration_wide_events_through() -> None:
    team_a = target(owner="team-a")
    assert hears(team_a, FAILED, {"owner": "team-a", "tier": "1"}) is NotificationKind.STEP_FAILED
    assert hears(team_a, FAILED, {"owner": "team-b"}) is None
    assert hears(team_a, FAILED, None) is None, "a Candidate no longer known matches no filter"
    assert hears(team_a, event(EventType.ROLLOUT_PAUSED, candidate_id=""), None) is NotificationKind.ROLLOUT_PAUSED
    assert hears(target(NotificationKind.REVIEW_WAITING), FAILED, {}) is None
    assert hears(target(migration_id="other"), FAILED, {}) is None


def test_ids_past_a_fresh_gap_wait_for_it_and_a_gap_that_stays_is_passed() -> None:
    gaps: dict[int, float] = {}
    assert settled_through(10, [11, 12, 14, 15], gaps, now=100.0, grace=5) == 12
    assert settled_through(10, [11, 12, 13, 14, 15], gaps, now=101.0, grace=5) == 15, "the gap filled"
    assert gaps == {}
    assert settled_through(15, [17], gaps, now=200.0, grace=5) == 15
    assert settled_through(15, [17], gaps, now=205.0, grace=5) == 17, "a gap 5 s old is an aborted insert"


def test_the_digest_sums_up_escapes_links_to_the_board_and_caps_its_lines() -> None:
    notices = [
        (NotificationKind.STEP_FAILED, event(EventType.STEP_COMPLETED, "failed", f"s{i}", error="a<b>&c"))
        for i in range(4)
    ]
    notices.append((NotificationKind.REVIEW_WAITING, event(EventType.STEP_UPDATED, "awaiting_review", "r")))
    body = digest("h", "d", notices, "https://loom.example.com/", max_lines=2)
    lines = body["text"].split("\n")
    assert lines[0] == "*Loom*: 1 review waiting, 4 Steps failed"
    assert lines[1] == (
        "• :x: Step `bump` failed for <https://loom.example.com/migrations/m/candidates/s0|s0> in "
        "<https://loom.example.com/migrations/m|m>: a&lt;b&gt;&amp;c"
    )
    assert lines[3:] == ["…and 3 more"]
    assert body["total"] == 5 and len(body["events"]) == 5 and body["deliveryId"] == "d"


def test_no_answer_5xx_408_and_429_are_retried_with_waits_doubling_to_a_cap() -> None:
    assert all(retryable(s) for s in (None, 500, 503, 408, 429))
    assert not any(retryable(s) for s in (400, 401, 404, 410))
    assert [retry_delay(n, 10) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


def test_a_stuck_step_is_keyed_by_its_stay_in_its_status_so_it_is_recorded_once_per_stay() -> None:
    since = datetime(2026, 1, 2, 1, 0, tzinfo=UTC)
    view = CandidateView(
        id="svc",
        kind="service",
        current_step="bump",
        current_step_status=StepStatus.OPEN,
        status_since=since,
        stuck=True,
    )
    found = stuck_event("m", view, NOW)
    assert found is not None
    key, logged = found
    assert key == f"stuck:m__svc:bump:open:{since.isoformat()}"
    assert (logged.event_type, logged.status, logged.metadata) == (
        EventType.STEP_STUCK,
        "open",
        {"since": since.isoformat()},
    )
    later = view.model_copy(update={"status_since": NOW})
    assert stuck_event("m", later, NOW)[0] != key  # type: ignore[index]
    assert stuck_event("m", view.model_copy(update={"stuck": False}), NOW) is None
