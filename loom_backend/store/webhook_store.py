"""The WebhookStore adapter: hooks in the `webhooks` table, over the read model's database and event log."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, delete, func, or_, select, update

from loom_backend.domain import CandidateFilter, CandidateView, EventType, StepEvent, StringMap, StuckLimits, StuckRule
from loom_backend.store.sql_store import CANDIDATES, STEP_EVENTS, SqlStore, _utc
from loom_backend.store.tables import WebhookRow
from loom_backend.webhooks import NOTABLE_EVENTS, NotificationKind, PendingDelivery, Webhook, WebhookTarget

WEBHOOKS: Table = WebhookRow.__table__  # type: ignore[attr-defined]
_NO_PENDING = {
    "delivery_id": None,
    "delivery_through": None,
    "delivery_body": None,
    "first_attempt_at": None,
    "next_attempt_at": None,
}


class SqlWebhookStore:
    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self.engine = store.engine

    def add_webhook(self, hook: Webhook, secret_digest: str) -> None:
        with self.engine.begin() as connection:
            end = connection.execute(select(func.coalesce(func.max(STEP_EVENTS.c.id), 0))).scalar_one()
            connection.execute(
                WEBHOOKS.insert().values(
                    id=hook.id,
                    url=hook.url,
                    events=[e.value for e in hook.events],
                    migration_id=hook.migration_id,
                    filter=dict(hook.filter),
                    secret_digest=secret_digest,
                    created_at=hook.created_at,
                    created_by=hook.created_by,
                    cursor=end,
                    delivered=0,
                    failed=0,
                    attempts=0,
                )
            )

    def list_webhooks(self) -> list[Webhook]:
        with self.engine.begin() as connection:
            rows = connection.execute(select(WEBHOOKS).order_by(WEBHOOKS.c.created_at, WEBHOOKS.c.id)).mappings()
            return [_webhook(r) for r in rows]

    def delete_webhook(self, hook_id: str) -> bool:
        with self.engine.begin() as connection:
            return connection.execute(delete(WEBHOOKS).where(WEBHOOKS.c.id == hook_id)).rowcount > 0

    def targets(self) -> list[tuple[WebhookTarget, PendingDelivery | None]]:
        with self.engine.begin() as connection:
            rows = connection.execute(select(WEBHOOKS).order_by(WEBHOOKS.c.id)).mappings().all()
        found: list[tuple[WebhookTarget, PendingDelivery | None]] = []
        for r in rows:
            target = WebhookTarget(
                id=r["id"],
                url=r["url"],
                events=frozenset(
                    NotificationKind(e) for e in r["events"] if e in NotificationKind.__members__.values()
                ),
                migration_id=r["migration_id"],
                filter=dict(r["filter"] or {}),
                signing_key=bytes.fromhex(r["secret_digest"]),
                cursor=int(r["cursor"]),
            )
            pending = None
            if r["delivery_id"] is not None:
                pending = PendingDelivery(
                    delivery_id=r["delivery_id"],
                    through=int(r["delivery_through"]),
                    body=str(r["delivery_body"]).encode(),
                    attempts=int(r["attempts"]),
                    first_attempt_at=_utc(r["first_attempt_at"]),
                    next_attempt_at=_utc(r["next_attempt_at"]) or _utc(r["created_at"]),  # type: ignore[arg-type]
                )
            found.append((target, pending))
        return found

    def event_ids_after(self, after_id: int, limit: int) -> list[int]:
        table = STEP_EVENTS
        with self.engine.begin() as connection:
            query = select(table.c.id).where(table.c.id > after_id).order_by(table.c.id).limit(limit)
            return [int(i) for i in connection.execute(query).scalars()]

    def notable_events(self, after_id: int, through: int) -> list[StepEvent]:
        table = STEP_EVENTS
        kinds = [
            and_(table.c.event_type == kind.value, *([table.c.status == status.value] if status else []))
            for kind, status in NOTABLE_EVENTS
        ]
        with self.engine.begin() as connection:
            rows = connection.execute(
                select(table).where(table.c.id > after_id, table.c.id <= through, or_(*kinds)).order_by(table.c.id)
            ).mappings()
            return [
                StepEvent(
                    id=r["id"],
                    run_id=r["run_id"],
                    migration_id=r["migration_id"],
                    candidate_id=r["candidate_id"],
                    step_name=r["step_name"],
                    event_type=EventType(r["event_type"]),
                    status=r["status"],
                    actor=r["actor"],
                    duration_ms=r["duration_ms"],
                    metadata=r["metadata"] or {},
                    created_at=_utc(r["created_at"]),
                )
                for r in rows
            ]

    def candidate_metadata(self, migration_id: str, candidate_ids: Sequence[str]) -> dict[str, StringMap]:
        table = CANDIDATES
        with self.engine.begin() as connection:
            rows = connection.execute(
                select(table.c.id, table.c["metadata"]).where(
                    table.c.migration_id == migration_id, table.c.id.in_(sorted(set(candidate_ids)))
                )
            )
            return {r[0]: dict(r[1] or {}) for r in rows}

    def migration_completed(self, migration_id: str) -> bool:
        table = CANDIDATES
        with self.engine.begin() as connection:
            total, done = connection.execute(
                select(func.count(), func.count().filter(table.c.status == "completed")).where(
                    table.c.migration_id == migration_id
                )
            ).one()
        return bool(total) and total == done

    def append_event(self, event: StepEvent, key: str) -> bool:
        return self._store.append_event(event, key)

    def migration_ids(self) -> list[str]:
        return [m.id for m in self._store.list_migrations()]

    def stuck_candidates(self, migration_id: str, rule: StuckRule, now: datetime) -> list[CandidateView]:
        limits = StuckLimits(now=now, rule=rule, p95_ms=self._store.step_p95_ms(migration_id))
        page = self._store.list_candidates(migration_id, CandidateFilter(stuck=True), stuck=limits, limit=500)
        return page.candidates

    def advance_cursor(self, hook_id: str, through: int) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(WEBHOOKS).where(WEBHOOKS.c.id == hook_id, WEBHOOKS.c.cursor < through).values(cursor=through)
            )

    def save_pending(self, hook_id: str, delivery: PendingDelivery, cursor: int) -> bool:
        with self.engine.begin() as connection:
            saved = connection.execute(
                update(WEBHOOKS)
                .where(WEBHOOKS.c.id == hook_id, WEBHOOKS.c.delivery_id.is_(None), WEBHOOKS.c.cursor == cursor)
                .values(
                    delivery_id=delivery.delivery_id,
                    delivery_through=delivery.through,
                    delivery_body=delivery.body.decode(),
                    attempts=delivery.attempts,
                    first_attempt_at=delivery.first_attempt_at,
                    next_attempt_at=delivery.next_attempt_at,
                )
            )
            return saved.rowcount == 1

    def record_attempt(
        self, hook_id: str, delivery: PendingDelivery, status: int | None, error: str | None, at: datetime
    ) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(WEBHOOKS)
                .where(WEBHOOKS.c.id == hook_id, WEBHOOKS.c.delivery_id == delivery.delivery_id)
                .values(
                    attempts=delivery.attempts,
                    first_attempt_at=delivery.first_attempt_at,
                    next_attempt_at=delivery.next_attempt_at,
                    last_status=status,
                    last_error=error,
                    last_attempt_at=at,
                )
            )

    def finish_delivery(
        self, hook_id: str, delivery: PendingDelivery, status: int | None, error: str | None, at: datetime, ok: bool
    ) -> None:
        outcome: dict[str, Any] = (
            {"delivered": WEBHOOKS.c.delivered + 1, "last_delivered_at": at}
            if ok
            else {"failed": WEBHOOKS.c.failed + 1}
        )
        with self.engine.begin() as connection:
            connection.execute(
                update(WEBHOOKS)
                .where(WEBHOOKS.c.id == hook_id, WEBHOOKS.c.delivery_id == delivery.delivery_id)
                .values(
                    cursor=func.greatest(WEBHOOKS.c.cursor, delivery.through)
                    if self._store.engine.dialect.name == "postgresql"
                    else func.max(WEBHOOKS.c.cursor, delivery.through),
                    attempts=delivery.attempts,
                    last_status=status,
                    last_error=error,
                    last_attempt_at=at,
                    **outcome,
                    **_NO_PENDING,
                )
            )


def _webhook(r: Any) -> Webhook:
    return Webhook(
        id=r["id"],
        url=r["url"],
        events=[NotificationKind(e) for e in r["events"] if e in NotificationKind.__members__.values()],
        migration_id=r["migration_id"],
        filter=dict(r["filter"] or {}),
        created_at=_utc(r["created_at"]),
        created_by=r["created_by"],
        delivered=int(r["delivered"]),
        failed=int(r["failed"]),
        pending=r["delivery_id"] is not None,
        attempts=int(r["attempts"]),
        next_attempt_at=_utc(r["next_attempt_at"]),
        last_status=r["last_status"],
        last_error=r["last_error"],
        last_attempt_at=_utc(r["last_attempt_at"]),
        last_delivered_at=_utc(r["last_delivered_at"]),
    )
