"""Outgoing notifications (webhooks): which events a hook hears, and the digest message it is sent. Pure, no I/O.

The deliverer (notifications.py) reads the event log past each hook's cursor and calls these rules; so what a
team's channel hears, and how 300 failures become one message, are unit-tested without HTTP or a database.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from urllib.parse import quote

from pydantic import Field

from loom_backend.domain import (
    MAX_METADATA_VALUE_LENGTH,
    CandidateView,
    EventType,
    StepEvent,
    StepStatus,
    StringMap,
    WireModel,
    run_id,
)

MAX_WEBHOOK_EVENTS_LISTED = 500  # events in one message (a longer backlog takes several); the text's lines fewer
SECRET_PREFIX = "loomwh_"


class NotificationKind(StrEnum):
    """What a hook may subscribe to."""

    REVIEW_WAITING = "review_waiting"  # a Step entered awaiting_review
    STEP_FAILED = "step_failed"
    STEP_STUCK = "step_stuck"  # in one status longer than the stuck rule allows (LOOM_STUCK_FACTOR x its p95)
    ROLLOUT_PAUSED = "rollout_paused"  # by an operator or by the breaker
    MIGRATION_COMPLETED = "migration_completed"  # every Candidate completed (once)


# The event log entries that can be a notification or lead to one (a Run completed: maybe its Migration too), by type
# and the status they need (None: any); the deliverer reads only these rows, and only the ids of the rest.
NOTABLE_EVENTS: tuple[tuple[EventType, StepStatus | None], ...] = (
    (EventType.STEP_UPDATED, StepStatus.AWAITING_REVIEW),
    (EventType.STEP_COMPLETED, StepStatus.FAILED),
    (EventType.STEP_STUCK, None),
    (EventType.ROLLOUT_PAUSED, None),
    (EventType.MIGRATION_COMPLETED, None),
    (EventType.RUN_COMPLETED, None),
)


def notification_kind(event: StepEvent) -> NotificationKind | None:
    """The notification an event log entry is, if any."""
    if event.event_type is EventType.STEP_UPDATED and event.status == StepStatus.AWAITING_REVIEW:
        return NotificationKind.REVIEW_WAITING
    if event.event_type is EventType.STEP_COMPLETED and event.status == StepStatus.FAILED:
        return NotificationKind.STEP_FAILED
    if event.event_type is EventType.STEP_STUCK:
        return NotificationKind.STEP_STUCK
    if event.event_type is EventType.ROLLOUT_PAUSED:
        return NotificationKind.ROLLOUT_PAUSED
    if event.event_type is EventType.MIGRATION_COMPLETED:
        return NotificationKind.MIGRATION_COMPLETED
    return None


class WebhookRequest(WireModel):
    """POST /api/webhooks: where to post, which events, optionally one Migration's only and a metadata filter."""

    url: Annotated[str, Field(min_length=1, max_length=2048)]
    events: Annotated[list[NotificationKind], Field(min_length=1, max_length=len(NotificationKind))]
    migration_id: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    # Candidate metadata values a Candidate's event must have (owner=team-a); Migration-wide events always pass.
    filter: Annotated[dict[str, Annotated[str, Field(max_length=MAX_METADATA_VALUE_LENGTH)]], Field(max_length=20)] = (
        Field(default_factory=dict)
    )


class Webhook(WireModel):
    """A hook as GET /api/webhooks lists it: never its secret; how its deliveries went."""

    id: str
    url: str
    events: list[NotificationKind]
    migration_id: str | None = None
    filter: StringMap = Field(default_factory=dict)
    created_at: datetime
    created_by: str
    delivered: int = 0  # messages a 2xx took
    failed: int = 0  # messages given up on: a 4xx other than 408/429, or the retry window ran out
    pending: bool = False  # a message waits to be (re)sent
    attempts: int = 0  # of the pending message, or of the last one
    next_attempt_at: datetime | None = None
    last_status: int | None = None  # HTTP status of the last attempt; None when it got no answer
    last_error: str | None = None
    last_attempt_at: datetime | None = None
    last_delivered_at: datetime | None = None


class WebhookCreated(Webhook):
    """The answer to POST /api/webhooks: the only time the secret is shown."""

    secret: str


@dataclass(frozen=True)
class WebhookTarget:
    """What the deliverer needs of a hook to choose and sign its messages."""

    id: str
    url: str
    events: frozenset[NotificationKind]
    migration_id: str | None
    filter: Mapping[str, str]
    signing_key: bytes
    cursor: int  # every event up to this id is delivered or was not for this hook


@dataclass(frozen=True)
class PendingDelivery:
    """A message built and not yet taken: resent byte for byte, with the same id, until a 2xx or giving up."""

    delivery_id: str
    through: int  # the cursor once it is taken
    body: bytes
    attempts: int
    first_attempt_at: datetime | None
    next_attempt_at: datetime


def hears(hook: WebhookTarget, event: StepEvent, metadata: Mapping[str, str] | None) -> NotificationKind | None:
    """The notification this hook gets for the event, or None: its kind, its Migration, its Candidate filter.

    `metadata` is the Candidate's (None for a Candidate no longer known); Migration-wide events pass the filter.
    """
    kind = notification_kind(event)
    if kind is None or kind not in hook.events:
        return None
    if hook.migration_id is not None and event.migration_id != hook.migration_id:
        return None
    unmatched = metadata is None or any(metadata.get(k) != v for k, v in hook.filter.items())
    if event.candidate_id and hook.filter and unmatched:
        return None
    return kind


def settled_through(cursor: int, ids: Sequence[int], gaps: dict[int, float], now: float, grace: float) -> int:
    """The last id the deliverer may take: ids up to the first gap younger than `grace` seconds.

    A database sequence hands out ids before commit, so an event with a lower id can still appear after a higher
    one was read; a gap that stays `grace` seconds is taken as never filled (an aborted or duplicate insert).
    `gaps` remembers when each gap (by its first missing id) was first seen, across calls.
    """
    last = cursor
    for event_id in sorted(ids):
        if event_id > last + 1:
            first_seen = gaps.setdefault(last + 1, now)
            if now - first_seen < grace:
                break
        last = event_id
    for start in [g for g in gaps if g <= last]:
        del gaps[start]
    return last


def stuck_event(migration_id: str, view: CandidateView, now: datetime) -> tuple[str, StepEvent] | None:
    """The event log entry of a stuck current Step, keyed by its stay in that status so it is recorded once."""
    if not view.stuck or view.current_step is None or view.status_since is None:
        return None
    since = view.status_since.isoformat()
    event = StepEvent(
        run_id=run_id(migration_id, view.id),
        migration_id=migration_id,
        candidate_id=view.id,
        step_name=view.current_step,
        event_type=EventType.STEP_STUCK,
        status=view.current_step_status.value if view.current_step_status else None,
        metadata={"since": since},
        created_at=now,
    )
    return f"stuck:{event.run_id}:{view.current_step}:{event.status}:{since}", event


def retryable(status: int | None) -> bool:
    """No answer, a 5xx, 408 or 429: try again later. Any other 4xx will not change by trying again."""
    return status is None or status >= 500 or status in (408, 429)


def retry_delay(attempts: int, max_seconds: float) -> float:
    """Seconds before the next attempt: 1, 2, 4, ... capped, as dispatches wait."""
    return float(min(max_seconds, 2 ** max(0, attempts - 1)))


_ICONS = {
    NotificationKind.REVIEW_WAITING: ":eyes:",
    NotificationKind.STEP_FAILED: ":x:",
    NotificationKind.STEP_STUCK: ":hourglass:",
    NotificationKind.ROLLOUT_PAUSED: ":double_vertical_bar:",
    NotificationKind.MIGRATION_COMPLETED: ":white_check_mark:",
}
_COUNTED = {
    NotificationKind.REVIEW_WAITING: ("review waiting", "reviews waiting"),
    NotificationKind.STEP_FAILED: ("Step failed", "Steps failed"),
    NotificationKind.STEP_STUCK: ("Step stuck", "Steps stuck"),
    NotificationKind.ROLLOUT_PAUSED: ("rollout paused", "rollouts paused"),
    NotificationKind.MIGRATION_COMPLETED: ("Migration completed", "Migrations completed"),
}


def _escape(text: str) -> str:
    """Slack's mrkdwn reserves &, < and >."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link(url: str, label: str) -> str:
    return f"<{url}|{_escape(label)}>"


def board_url(public_url: str, migration_id: str, candidate_id: str = "") -> str:
    base = f"{public_url.rstrip('/')}/migrations/{quote(migration_id, safe='')}"
    return f"{base}/candidates/{quote(candidate_id, safe='')}" if candidate_id else base


def _line(kind: NotificationKind, event: StepEvent, public_url: str) -> str:
    migration = _link(board_url(public_url, event.migration_id), event.migration_id)
    who = _link(board_url(public_url, event.migration_id, event.candidate_id), event.candidate_id)
    step = f"`{_escape(event.step_name or '')}`"
    if kind is NotificationKind.REVIEW_WAITING:
        said = f"Step {step} of {who} waits for a review in {migration}"
    elif kind is NotificationKind.STEP_FAILED:
        error = event.metadata.get("error") or event.metadata.get("message")
        said = f"Step {step} failed for {who} in {migration}" + (f": {_escape(error[:200])}" if error else "")
    elif kind is NotificationKind.STEP_STUCK:
        status = event.status or "its status"
        said = f"Step {step} of {who} is stuck in {migration}: {status} since {event.metadata.get('since', '?')}"
    elif kind is NotificationKind.ROLLOUT_PAUSED:
        said = f"The rollout of {migration} paused: {_escape(event.metadata.get('reason') or 'paused')}"
    else:
        said = f"{migration} completed: every Candidate is done"
    return f"{_ICONS[kind]} {said}"


def digest(
    hook_id: str,
    delivery_id: str,
    notices: Sequence[tuple[NotificationKind, StepEvent]],
    public_url: str,
    max_lines: int,
) -> dict[str, Any]:
    """One message for many events: Slack-compatible `text` (a summary, at most `max_lines` lines, "and N more")
    and every event structured in `events` (the deliverer puts at most MAX_WEBHOOK_EVENTS_LISTED in one message)."""
    total = len(notices)
    counts = Counter(kind for kind, _ in notices)
    summary = ", ".join(
        f"{n} {_COUNTED[k][0] if n == 1 else _COUNTED[k][1]}" for k in NotificationKind if (n := counts.get(k, 0))
    )
    lines = [f"*Loom*: {summary}" if summary else "*Loom*"]
    lines += [f"• {_line(kind, event, public_url)}" for kind, event in notices[:max_lines]]
    if total > max_lines:
        lines.append(f"…and {total - max_lines} more")
    events = [
        {
            "id": event.id,
            "kind": kind.value,
            "migrationId": event.migration_id,
            "candidateId": event.candidate_id or None,
            "stepName": event.step_name,
            "status": event.status,
            "actor": event.actor,
            "metadata": event.metadata,
            "at": event.created_at.isoformat(),
            "url": board_url(public_url, event.migration_id, event.candidate_id),
        }
        for kind, event in notices
    ]
    return {
        "text": "\n".join(lines),
        "deliveryId": delivery_id,
        "webhookId": hook_id,
        "total": total,
        "events": events,
    }


def secret_digest(secret: str) -> str:
    """SHA-256 of a hook's secret, hex: what Loom keeps, and (as bytes) the key it signs with, as for tokens."""
    return hashlib.sha256(secret.encode()).hexdigest()
