"""Webhook delivery and management: the use cases behind /api/webhooks and `loom webhook`, and the deliverer loop.

The deliverer is an outbox reader over the append-only event log: for each hook it reads the events past the hook's
cursor, gathers what the hook hears for a short window into one digest, saves that message as the hook's pending
delivery, posts it, and moves the cursor past it only once a 2xx took it. A process killed at any point leaves either
the cursor or the pending message in the database, so nothing is lost; a repeat carries the same `Loom-Delivery` id.
Only the holder of the lease delivers, so several workers never send twice over each other.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from loom_backend import errors
from loom_backend.domain import (
    MAX_METADATA_KEY_LENGTH,
    EventType,
    StepEvent,
    StringMap,
    StuckRule,
)
from loom_backend.ports import Lease, WebhookSender, WebhookStore
from loom_backend.webhooks import (
    MAX_WEBHOOK_EVENTS_LISTED,
    SECRET_PREFIX,
    NotificationKind,
    PendingDelivery,
    Webhook,
    WebhookCreated,
    WebhookRequest,
    WebhookTarget,
    digest,
    hears,
    retry_delay,
    retryable,
    secret_digest,
    settled_through,
    stuck_event,
)

T = TypeVar("T")
log = logging.getLogger(__name__)
SCAN_LIMIT = 10_000  # event ids read per query
SCAN_PAGES = 10  # queries per hook and look: a backlog of up to 100,000 events is one digest


def _utcnow() -> datetime:
    return datetime.now(UTC)


async def _db(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(fn, *args)


class WebhookAdmin:
    """Adding, listing and removing hooks, for the service (which checks the caller is an admin) and the CLI.

    The secret is made here and shown once; Loom keeps only its SHA-256, which is also the signing key.
    """

    def __init__(self, store: WebhookStore, sender: WebhookSender, clock: Callable[[], datetime] = _utcnow) -> None:
        self.store = store
        self.sender = sender
        self.clock = clock

    async def create(self, actor: str, request: WebhookRequest) -> WebhookCreated:
        for key in request.filter:
            if not key.strip() or len(key) > MAX_METADATA_KEY_LENGTH:
                raise errors.InvalidInput(
                    f"filter: a metadata key must be 1 to {MAX_METADATA_KEY_LENGTH} characters, got {key!r}",
                    field="filter",
                )
        await self.sender.check_url(request.url)
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        hook = Webhook(
            id=uuid.uuid4().hex[:16],
            url=request.url,
            events=list(dict.fromkeys(request.events)),
            migration_id=request.migration_id,
            filter=dict(request.filter),
            created_at=self.clock(),
            created_by=actor,
        )
        await _db(self.store.add_webhook, hook, secret_digest(secret))
        return WebhookCreated(**dict(hook), secret=secret)

    async def list(self) -> list[Webhook]:
        return await _db(self.store.list_webhooks)

    async def remove(self, hook_id: str) -> None:
        if not await _db(self.store.delete_webhook, hook_id):
            raise errors.WebhookNotFound(hook_id)


class WebhookDeliverer:
    """One per installation (under the lease): every hook served by its own task, so a slow one blocks no other."""

    def __init__(
        self,
        store: WebhookStore,
        sender: WebhookSender,
        lease: Lease,
        *,
        public_url: str,
        digest_seconds: float = 30.0,
        max_lines: int = 20,
        retry_seconds: float = 6 * 3600,
        backoff_max_seconds: float = 300.0,
        tick_seconds: float = 1.0,
        gap_grace_seconds: float = 10.0,
        stuck_rule: StuckRule | None = None,
        stuck_every_seconds: float = 30.0,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.stuck_rule = stuck_rule or StuckRule()
        self.stuck_every_seconds = stuck_every_seconds
        self._stuck_looked_at = -float("inf")
        self._stuck_recorded: set[str] = set()  # keys written by this process: not tried again (each try costs an id)
        self.store = store
        self.sender = sender
        self.lease = lease
        self.public_url = public_url
        self.digest_seconds = digest_seconds
        self.max_lines = max_lines
        self.retry_seconds = retry_seconds
        self.backoff_max_seconds = backoff_max_seconds
        self.tick_seconds = tick_seconds
        self.gap_grace_seconds = gap_grace_seconds
        self.clock = clock
        self._first_seen: dict[str, float] = {}  # hook -> when its oldest undelivered notice was first seen
        self._gaps: dict[str, dict[int, float]] = {}
        self._derived_through = 0
        self._busy: dict[str, asyncio.Task[None]] = {}
        self._leased: bool | None = None  # None: not asked yet

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.tick()
                except Exception:
                    log.exception("Delivering webhooks failed; trying again")
                await asyncio.sleep(self.tick_seconds)
        finally:
            for task in self._busy.values():
                task.cancel()
            await _db(self.lease.release)

    async def tick(self) -> None:
        """Take or keep the lease, then start serving each hook that is not being served."""
        leased = await _db(self.lease.acquire)
        if leased != self._leased:
            log.warning(
                "This process delivers webhooks" if leased else "Another process holds the webhook lease and delivers"
            )
            self._leased = leased
        if not leased:
            return
        # Busy before reading, so a hook's snapshot is never older than the last writes of its finished task.
        busy = {hook_id for hook_id, task in self._busy.items() if not task.done()}
        targets = await _db(self.store.targets)
        if time.monotonic() - self._stuck_looked_at >= self.stuck_every_seconds:
            self._stuck_looked_at = time.monotonic()
            await self._record_stuck([t for t, _ in targets if NotificationKind.STEP_STUCK in t.events])
        for target, pending in targets:
            if target.id not in busy:
                self._busy[target.id] = asyncio.create_task(self._serve(target, pending))
        for gone in set(self._busy) - {t.id for t, _ in targets} - busy:
            del self._busy[gone]

    async def drain(self) -> None:
        """Wait for the hooks' tasks started so far (tests, and a clean stop)."""
        await asyncio.gather(*self._busy.values(), return_exceptions=True)

    async def _serve(self, target: WebhookTarget, pending: PendingDelivery | None) -> None:
        try:
            if pending is None:
                pending = await self._collect(target)
            if pending is not None and pending.next_attempt_at <= self.clock():
                await self._attempt(target, pending)
        except Exception:
            log.exception("Webhook %s: delivery failed; trying again", target.id)

    async def _collect(self, target: WebhookTarget) -> PendingDelivery | None:
        """The hook's next message once its window has passed; the cursor moves past events it does not hear."""
        gaps = self._gaps.setdefault(target.id, {})
        through = target.cursor
        for _ in range(SCAN_PAGES):
            ids = await _db(self.store.event_ids_after, through, SCAN_LIMIT)
            settled = settled_through(through, ids, gaps, time.monotonic(), self.gap_grace_seconds)
            read_all = settled == through or len(ids) < SCAN_LIMIT or settled < ids[-1]
            through = settled
            if read_all:
                break
        if through == target.cursor:
            return None
        events = await _db(self.store.notable_events, target.cursor, through)
        await self._derive(events)
        metadata = await self._metadata(target, events)
        notices: list[tuple[NotificationKind, StepEvent]] = []
        for event in events:
            kind = hears(target, event, metadata.get((event.migration_id, event.candidate_id)))
            if kind is not None:
                notices.append((kind, event))
                if len(notices) == MAX_WEBHOOK_EVENTS_LISTED:
                    through = event.id or through
                    break
        if not notices:
            await _db(self.store.advance_cursor, target.id, through)
            self._first_seen.pop(target.id, None)
            return None
        first = self._first_seen.setdefault(target.id, time.monotonic())
        if time.monotonic() - first < self.digest_seconds:
            return None
        self._first_seen.pop(target.id, None)
        delivery_id = uuid.uuid4().hex
        body = digest(target.id, delivery_id, notices, self.public_url, self.max_lines)
        pending = PendingDelivery(
            delivery_id=delivery_id,
            through=through,
            body=json.dumps(body, separators=(",", ":")).encode(),
            attempts=0,
            first_attempt_at=None,
            next_attempt_at=self.clock(),
        )
        if not await _db(self.store.save_pending, target.id, pending, target.cursor):
            return None  # another deliverer (one that lost the lease, say) got there first
        return pending

    async def _metadata(self, target: WebhookTarget, events: list[StepEvent]) -> dict[tuple[str, str], StringMap]:
        if not target.filter:
            return {}
        wanted: dict[str, set[str]] = {}
        for e in events:
            if e.candidate_id:
                wanted.setdefault(e.migration_id, set()).add(e.candidate_id)
        found: dict[tuple[str, str], StringMap] = {}
        for migration_id, ids in wanted.items():
            for candidate_id, meta in (await _db(self.store.candidate_metadata, migration_id, sorted(ids))).items():
                found[(migration_id, candidate_id)] = meta
        return found

    async def _derive(self, events: list[StepEvent]) -> None:
        """Record "Migration completed" once, when a Run completion leaves no Candidate uncompleted.

        Checked after the completion's own transaction committed, so the last of two concurrent ones sees both.
        """
        fresh = [e for e in events if (e.id or 0) > self._derived_through]
        if not fresh:
            return
        migrations = sorted({e.migration_id for e in fresh if e.event_type is EventType.RUN_COMPLETED})
        for migration_id in migrations:
            if await _db(self.store.migration_completed, migration_id):
                event = StepEvent(
                    run_id=f"migration:{migration_id}",
                    migration_id=migration_id,
                    candidate_id="",
                    event_type=EventType.MIGRATION_COMPLETED,
                    created_at=self.clock(),
                )
                await _db(self.store.append_event, event, f"migration_completed:{migration_id}")
        self._derived_through = max(self._derived_through, *(e.id or 0 for e in fresh))

    async def _record_stuck(self, listening: list[WebhookTarget]) -> None:
        """Steps becoming stuck are no event of a Run: look for them now and then, and record each stay once."""
        if not listening:
            return
        scoped = {t.migration_id for t in listening}
        migrations = await _db(self.store.migration_ids) if None in scoped else sorted(m for m in scoped if m)
        now = self.clock()
        for migration_id in migrations:
            for view in await _db(self.store.stuck_candidates, migration_id, self.stuck_rule, now):
                found = stuck_event(migration_id, view, now)
                if found is not None and found[0] not in self._stuck_recorded:
                    await _db(self.store.append_event, found[1], found[0])
                    self._stuck_recorded.add(found[0])

    async def _attempt(self, target: WebhookTarget, pending: PendingDelivery) -> None:
        status, error = await self.sender.send(target.url, target.signing_key, pending.delivery_id, pending.body)
        now = self.clock()
        tried = replace(pending, attempts=pending.attempts + 1, first_attempt_at=pending.first_attempt_at or now)
        if status is not None and 200 <= status < 300:
            await _db(self.store.finish_delivery, target.id, tried, status, None, now, True)
            return
        assert tried.first_attempt_at is not None
        out_of_time = (now - tried.first_attempt_at).total_seconds() >= self.retry_seconds
        if not retryable(status) or out_of_time:
            log.warning("Webhook %s: gave up on delivery %s: %s", target.id, pending.delivery_id, error)
            await _db(self.store.finish_delivery, target.id, tried, status, error, now, False)
            return
        wait = retry_delay(tried.attempts, self.backoff_max_seconds)
        retry = replace(tried, next_attempt_at=now + timedelta(seconds=wait))
        await _db(self.store.record_attempt, target.id, retry, status, error, now)
