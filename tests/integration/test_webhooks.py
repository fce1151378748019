"""Outgoing webhooks against a real HTTP receiver, on SQLite and PostgreSQL: signed like dispatches, one digest per
window, retried with the same delivery id until a 2xx, filtered by Candidate metadata, and nothing lost when the
deliverer stops mid-way. Events are written to the real event log as Runs write them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from loom_backend.domain import (
    Candidate,
    CandidateStatus,
    EventType,
    MigrationAnnouncement,
    RunChange,
    StepDefinition,
    StepEvent,
    StepResult,
    StepStatus,
    StuckRule,
    run_id,
)
from loom_backend.notifications import WebhookAdmin, WebhookDeliverer
from loom_backend.rollout import BREAKER, RolloutPolicy, RolloutState, note, rollout_events, status_of
from loom_backend.store.lease import DatabaseLease
from loom_backend.store.sql_store import SqlStore
from loom_backend.store.webhook_store import SqlWebhookStore
from loom_backend.url_allow import MigratorUrlPolicy
from loom_backend.webhook_client import DELIVERY_HEADER, HttpWebhookSender
from loom_backend.webhooks import NotificationKind, WebhookCreated, WebhookRequest
from loom_migrator.signing import SignatureRejected, SignatureVerifier, signing_key
from tests.harness import LoomProcess, clean_env, eventually, free_port, serve

M = "base-image"
PUBLIC = "https://loom.example.com"


@dataclass
class Receiver:
    """A real HTTP receiver: records every request; answers the scripted statuses first, then 200."""

    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def hook(self, request: Request) -> Response:
        body = await request.body()
        with self.lock:
            self.received.append((dict(request.headers), body))
            status = self.script.pop(0) if self.script else 200
        return Response("ok" if status < 400 else "no", status_code=status)

    def messages(self) -> list[dict[str, Any]]:
        return [json.loads(body) for _, body in self.received]

    def taken(self) -> list[dict[str, Any]]:
        """One message per delivery id, as a receiver that drops repeats keeps them."""
        seen: dict[str, dict[str, Any]] = {}
        for headers, body in self.received:
            seen.setdefault(headers[DELIVERY_HEADER.lower()], json.loads(body))
        return list(seen.values())


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    port = free_port()
    found = Receiver(url=f"http://127.0.0.1:{port}/hooks/loom")
    app = Starlette(routes=[Route("/hooks/loom", found.hook, methods=["POST"])])
    async with serve(app, port):
        yield found


def candidates(n: int) -> list[Candidate]:
    return [
        Candidate(id=f"svc-{i:02d}", kind="service", metadata={"owner": "team-a" if i % 2 == 0 else "team-b"})
        for i in range(n)
    ]


@pytest.fixture
def migration(store: SqlStore) -> SqlStore:
    store.announce(
        MigrationAnnouncement(
            id=M,
            name="Base image",
            description="",
            steps=[StepDefinition(name="bump", migrator_app="demo")],
            candidates=candidates(40),
            migrator_url="http://127.0.0.1:9000",
        ),
        datetime.now(UTC),
    )
    return store


def record(
    store: SqlStore, candidate_id: str, event_type: EventType, status: str | None, key: str, **meta: str
) -> None:
    """What a Run writes for one of its events: the event (and the Candidate's status when it completes)."""
    event = StepEvent(
        run_id=run_id(M, candidate_id),
        migration_id=M,
        candidate_id=candidate_id,
        step_name="bump",
        event_type=event_type,
        status=status,
        metadata=dict(meta),
        created_at=datetime.now(UTC),
    )
    changes = [RunChange(event=event, event_key=key)]
    if event_type is EventType.RUN_COMPLETED:
        changes.insert(0, RunChange(candidate_status=CandidateStatus.COMPLETED))
    store.apply_run_changes(run_id(M, candidate_id), M, candidate_id, changes)


def fail(store: SqlStore, candidate_id: str, n: int = 0) -> None:
    record(store, candidate_id, EventType.STEP_COMPLETED, StepStatus.FAILED, f"fail-{candidate_id}-{n}", error="boom")


@dataclass
class Hooks:
    store: SqlStore
    hooks: SqlWebhookStore
    sender: HttpWebhookSender
    admin: WebhookAdmin
    made: list[WebhookDeliverer] = field(default_factory=list)

    async def add(self, url: str, *events: NotificationKind, **filter: str) -> WebhookCreated:
        request = WebhookRequest(url=url, events=list(events) or [NotificationKind.STEP_FAILED], filter=filter)
        return await self.admin.create("ana", request)

    def deliverer(self, **options: Any) -> WebhookDeliverer:
        store: Any = options.pop("store", self.hooks)
        made = WebhookDeliverer(
            store,
            self.sender,
            DatabaseLease(self.store.engine),
            public_url=PUBLIC,
            digest_seconds=options.pop("digest_seconds", 0.3),
            max_lines=options.pop("max_lines", 5),
            backoff_max_seconds=0.05,
            tick_seconds=0.05,
            gap_grace_seconds=1.0,
            **options,
        )
        self.made.append(made)
        return made

    def listed(self, hook_id: str) -> Any:
        return next(h for h in self.hooks.list_webhooks() if h.id == hook_id)


@pytest.fixture
async def hooks(migration: SqlStore) -> AsyncIterator[Hooks]:
    sender = HttpWebhookSender(MigratorUrlPolicy("127.0.0.0/8"), timeout_seconds=5)
    made = Hooks(migration, SqlWebhookStore(migration), sender, WebhookAdmin(SqlWebhookStore(migration), sender))
    try:
        yield made
    finally:
        for deliverer in made.made:
            deliverer.lease.release()
        await sender.aclose()


@contextlib.asynccontextmanager
async def delivering(deliverer: WebhookDeliverer) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(deliverer.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(check: Callable[[], Any], what: str, timeout: float = 15) -> Any:
    return await eventually(check, timeout, what, interval=0.05)


async def test_a_message_is_signed_like_a_dispatch_and_verifies_with_the_hook_secret(
    hooks: Hooks, receiver: Receiver
) -> None:
    hook = await hooks.add(receiver.url)
    fail(hooks.store, "svc-00")
    async with delivering(hooks.deliverer()):
        await until(lambda: receiver.received, "a message")
    headers, body = receiver.received[0]
    SignatureVerifier(signing_key(hook.secret)).verify(headers, "POST", "/hooks/loom", body)
    message = json.loads(body)
    assert message["deliveryId"] == headers["loom-delivery"] and message["webhookId"] == hook.id
    assert message["events"][0]["kind"] == "step_failed" and message["events"][0]["candidateId"] == "svc-00"
    assert f"<{PUBLIC}/migrations/{M}/candidates/svc-00|svc-00>" in message["text"]
    with pytest.raises(SignatureRejected, match="does not match"):
        SignatureVerifier(signing_key("another secret")).verify(headers, "POST", "/hooks/loom", body)


async def test_thirty_failures_in_one_window_arrive_as_one_digest(hooks: Hooks, receiver: Receiver) -> None:
    hook = await hooks.add(receiver.url)
    for i in range(30):
        fail(hooks.store, f"svc-{i:02d}")
    async with delivering(hooks.deliverer(digest_seconds=1.0, max_lines=5)):
        await until(lambda: hooks.listed(hook.id).delivered == 1, "the digest")
        await asyncio.sleep(1.5)  # a second window passes: nothing else to say
    assert len(receiver.received) == 1
    message = receiver.messages()[0]
    assert message["total"] == 30
    assert sorted(e["candidateId"] for e in message["events"]) == [f"svc-{i:02d}" for i in range(30)]
    lines = message["text"].split("\n")
    assert lines[0] == "*Loom*: 30 Steps failed"
    assert len(lines) == 1 + 5 + 1 and lines[-1] == "…and 25 more"


async def test_a_receiver_answering_500_twice_gets_the_same_message_again_and_nothing_is_lost(
    hooks: Hooks, receiver: Receiver
) -> None:
    hook = await hooks.add(receiver.url)
    receiver.script = [500, 500]
    fail(hooks.store, "svc-00")
    async with delivering(hooks.deliverer()):
        await until(lambda: hooks.listed(hook.id).delivered == 1, "the third attempt to be taken")
        fail(hooks.store, "svc-01")  # after the retried message: the next message has it
        await until(lambda: hooks.listed(hook.id).delivered == 2, "the next message")
    first, second, third, fourth = receiver.received
    assert first[0]["loom-delivery"] == second[0]["loom-delivery"] == third[0]["loom-delivery"]
    assert first[1] == second[1] == third[1], "a retry resends the message byte for byte"
    assert fourth[0]["loom-delivery"] != first[0]["loom-delivery"]
    assert [e["candidateId"] for m in receiver.taken() for e in m["events"]] == ["svc-00", "svc-01"]
    listed = hooks.listed(hook.id)
    assert (listed.failed, listed.pending, listed.last_status, listed.last_error) == (0, False, 200, None)


async def test_a_4xx_gives_the_message_up_visibly_and_later_events_still_go_out(
    hooks: Hooks, receiver: Receiver
) -> None:
    hook = await hooks.add(receiver.url)
    receiver.script = [400]
    fail(hooks.store, "svc-00")
    async with delivering(hooks.deliverer()):
        await until(lambda: hooks.listed(hook.id).failed == 1, "the message to be given up")
        listed = hooks.listed(hook.id)
        assert (listed.last_status, listed.attempts, listed.pending) == (400, 1, False)
        assert "HTTP 400" in (listed.last_error or "")
        fail(hooks.store, "svc-01")
        await until(lambda: hooks.listed(hook.id).delivered == 1, "the next message")
    assert [m["events"][0]["candidateId"] for m in receiver.messages()] == ["svc-00", "svc-01"]


async def test_each_team_hears_only_of_its_own_candidates(hooks: Hooks, receiver: Receiver) -> None:
    team_a = await hooks.add(receiver.url, owner="team-a")
    team_b = await hooks.add(receiver.url, owner="team-b")
    for i in range(6):
        fail(hooks.store, f"svc-{i:02d}")
    async with delivering(hooks.deliverer()):
        await until(lambda: len(receiver.received) == 2, "one message per team")
    by_hook = {m["webhookId"]: sorted(e["candidateId"] for e in m["events"]) for m in receiver.messages()}
    assert by_hook == {team_a.id: ["svc-00", "svc-02", "svc-04"], team_b.id: ["svc-01", "svc-03", "svc-05"]}


async def test_a_hook_hears_only_the_events_it_chose(hooks: Hooks, receiver: Receiver) -> None:
    await hooks.add(receiver.url, NotificationKind.REVIEW_WAITING)
    fail(hooks.store, "svc-00")
    record(hooks.store, "svc-01", EventType.STEP_UPDATED, StepStatus.AWAITING_REVIEW, "review-1")
    record(hooks.store, "svc-02", EventType.STEP_UPDATED, StepStatus.OPEN, "open-2")
    async with delivering(hooks.deliverer()):
        await until(lambda: receiver.received, "the review message")
        await asyncio.sleep(0.5)
    [message] = receiver.messages()
    assert [(e["kind"], e["candidateId"]) for e in message["events"]] == [("review_waiting", "svc-01")]
    assert "waits for a review" in message["text"]


class CrashAfterPost(SqlWebhookStore):
    """The store of a deliverer SIGKILLed after the receiver took a message, before the cursor moved."""

    def finish_delivery(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed before the cursor moved")


async def test_a_deliverer_stopped_mid_way_loses_nothing_and_its_successor_repeats_the_same_delivery_id(
    hooks: Hooks, receiver: Receiver
) -> None:
    hook = await hooks.add(receiver.url)
    for i in range(3):
        fail(hooks.store, f"svc-{i:02d}")
    first = hooks.deliverer(store=CrashAfterPost(hooks.store))
    await first.tick()  # saves the message as pending; the window has not passed yet
    await first.drain()
    await asyncio.sleep(0.4)
    await first.tick()  # posts it; the receiver takes it; the process dies before recording that
    await first.drain()
    assert len(receiver.received) == 1 and hooks.listed(hook.id).pending, "taken, but the cursor did not move"
    first.lease.release()  # the process is gone: its lease with it

    for i in range(3, 6):
        fail(hooks.store, f"svc-{i:02d}")
    async with delivering(hooks.deliverer()):
        await until(lambda: hooks.listed(hook.id).delivered == 2, "the repeat and the rest")
    ids = [headers["loom-delivery"] for headers, _ in receiver.received]
    assert ids[0] == ids[1] and len(set(ids)) == 2, "the repeat carries the first delivery id"
    taken = [e["candidateId"] for m in receiver.taken() for e in m["events"]]
    assert taken == [f"svc-{i:02d}" for i in range(6)], "every event once, after dropping the repeat"


async def test_only_one_deliverer_holds_the_lease(hooks: Hooks, receiver: Receiver) -> None:
    one, other = hooks.deliverer(), hooks.deliverer()
    assert one.lease.acquire() and not other.lease.acquire()
    one.lease.release()
    assert other.lease.acquire()


async def test_migration_completed_is_sent_once_when_every_candidate_completed(
    hooks: Hooks, receiver: Receiver
) -> None:
    await hooks.add(receiver.url, NotificationKind.MIGRATION_COMPLETED)
    for i in range(39):
        record(hooks.store, f"svc-{i:02d}", EventType.RUN_COMPLETED, None, f"done-{i}")
    async with delivering(hooks.deliverer()):
        await asyncio.sleep(0.8)
        assert not receiver.received, "one Candidate is not completed yet"
        record(hooks.store, "svc-39", EventType.RUN_COMPLETED, None, "done-39")
        await until(lambda: receiver.received, "Migration completed")
        record(hooks.store, "svc-39", EventType.RUN_COMPLETED, None, "done-39-again")
        await asyncio.sleep(0.8)
    [message] = receiver.messages()
    assert [e["kind"] for e in message["events"]] == ["migration_completed"]
    assert f"<{PUBLIC}/migrations/{M}|{M}> completed" in message["text"]
    completed = hooks.store.list_events(M, event_type=EventType.MIGRATION_COMPLETED).events
    assert len(completed) == 1


async def test_a_rollout_paused_by_the_breaker_reaches_every_team_of_the_migration(
    hooks: Hooks, receiver: Receiver
) -> None:
    await hooks.add(receiver.url, NotificationKind.ROLLOUT_PAUSED, owner="team-a")
    state = RolloutState(
        migration_id=M,
        actor="ana",
        policy=RolloutPolicy(max_running=1, pause_after_failures=1),
        queue=["svc-00"],
        started_at=datetime.now(UTC),
    )
    note(state, EventType.ROLLOUT_PAUSED, BREAKER, datetime.now(UTC), reason="the breaker tripped: 1 Run(s) failed")
    # What the rollout's publish activity writes: its status and its actions, in one transaction.
    events = rollout_events(M, state.started_at, state.notes)
    hooks.store.set_rollout_status(M, status_of(state), events)
    hooks.store.set_rollout_status(M, status_of(state), events)  # a retried activity: written once
    async with delivering(hooks.deliverer()):
        await until(lambda: receiver.received, "the pause")
        await asyncio.sleep(0.5)
    [message] = receiver.messages()
    assert [(e["kind"], e["actor"]) for e in message["events"]] == [("rollout_paused", "breaker")]
    assert f"The rollout of <{PUBLIC}/migrations/{M}|{M}> paused: the breaker tripped" in message["text"]


async def test_a_step_stuck_past_the_rule_is_sent_once_per_stay_in_its_status(hooks: Hooks, receiver: Receiver) -> None:
    await hooks.add(receiver.url, NotificationKind.STEP_STUCK)
    now = datetime.now(UTC)
    for candidate_id, since in (("svc-00", now - timedelta(hours=2)), ("svc-01", now)):
        result = StepResult(
            step_name="bump",
            candidate_id=candidate_id,
            status=StepStatus.IN_PROGRESS,
            started_at=since,
            updated_at=since,
        )
        changes = [RunChange(candidate_status=CandidateStatus.RUNNING), RunChange(step_result=result)]
        hooks.store.apply_run_changes(run_id(M, candidate_id), M, candidate_id, changes)
    deliverer = hooks.deliverer(stuck_rule=StuckRule(factor=3.0, floor_seconds=60), stuck_every_seconds=0.1)
    async with delivering(deliverer):
        await until(lambda: receiver.received, "the stuck Step")
        await asyncio.sleep(0.8)  # looked at several times more: still stuck, not said again
    [message] = receiver.messages()
    assert [(e["kind"], e["candidateId"], e["status"]) for e in message["events"]] == [
        ("step_stuck", "svc-00", "in_progress")
    ]
    assert "is stuck in" in message["text"]
    assert len(hooks.store.list_events(M, event_type=EventType.STEP_STUCK).events) == 1


async def test_a_worker_sigkilled_mid_post_loses_nothing_and_the_other_worker_takes_over(
    store: SqlStore, migration: SqlStore, temporal_address: str, tmp_path: Path
) -> None:
    """Two real `loom worker` processes: only the lease holder posts; killed while its receiver holds the request,
    the other takes the lease and resends the same message with the same delivery id, then goes on."""
    held = asyncio.Event()
    release = asyncio.Event()
    received: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: Request) -> Response:
        received.append((dict(request.headers), await request.body()))
        if len(received) == 1:
            held.set()
            await release.wait()  # the first message hangs until its sender is gone
        return Response("ok")

    port = free_port()
    url = f"http://127.0.0.1:{port}/hooks/loom"
    sender = HttpWebhookSender(MigratorUrlPolicy("127.0.0.0/8"))
    await WebhookAdmin(SqlWebhookStore(store), sender).create("ana", WebhookRequest(url=url, events=["step_failed"]))
    await sender.aclose()
    env = clean_env(
        LOOM_DATABASE_URL=store.url,
        LOOM_TEMPORAL_ADDRESS=temporal_address,
        LOOM_TEMPORAL_TASK_QUEUE=f"webhooks-{port}",
        LOOM_DATA_DIR=str(tmp_path),
        LOOM_PUBLIC_URL=PUBLIC,
        LOOM_DEMO="false",
        LOOM_WEBHOOK_DIGEST_SECONDS="0.3",
        LOOM_WEBHOOK_URL_ALLOW="127.0.0.0/8",
        LOOM_WEBHOOK_TIMEOUT_SECONDS="120",  # the held post stays in flight until its worker dies
    )
    command = [sys.executable, "-m", "loom_backend.cli", "worker"]
    workers = [LoomProcess(f"worker-{n}", command, env, tmp_path / f"worker-{n}.log") for n in "ab"]
    async with serve(Starlette(routes=[Route("/hooks/loom", hook, methods=["POST"])]), port):
        try:
            first, second = workers
            first.start()
            for i in range(5):
                fail(store, f"svc-{i:02d}")
            await asyncio.wait_for(held.wait(), 60)
            second.start()
            await until(lambda: "Another process holds" in second.log_tail(), "the second worker to wait", 60)
            assert len(received) == 1, "only the lease holder posts"
            first.kill()
            await until(lambda: len(received) >= 2, "the second worker to resend", 30)
            release.set()
            for i in range(5, 8):
                fail(store, f"svc-{i:02d}")
            await until(lambda: len(received) >= 3, "the next message", 30)
        finally:
            release.set()
            for worker in workers:
                worker.stop()
    ids = [headers["loom-delivery"] for headers, _ in received]
    assert ids[0] == ids[1] != ids[2] and received[0][1] == received[1][1]
    unique = {headers["loom-delivery"]: json.loads(body) for headers, body in received}
    taken = sorted(e["candidateId"] for m in unique.values() for e in m["events"])
    assert taken == [f"svc-{i:02d}" for i in range(8)], "every event once, after dropping the repeat"


class UnnoticedLoss:
    """A lease its holder still believes it holds after losing it (a connection that dropped mid-tick)."""

    def acquire(self) -> bool:
        return True

    def held(self) -> bool:
        return True

    def release(self) -> None:
        pass


async def test_two_deliverers_that_both_believe_they_lead_still_send_one_message_id(
    hooks: Hooks, receiver: Receiver
) -> None:
    hook = await hooks.add(receiver.url)
    for i in range(4):
        fail(hooks.store, f"svc-{i:02d}")
    both = [hooks.deliverer(digest_seconds=0), hooks.deliverer(digest_seconds=0)]
    for deliverer in both:
        deliverer.lease = UnnoticedLoss()
    for _ in range(5):
        await asyncio.gather(*(d.tick() for d in both))
        await asyncio.gather(*(d.drain() for d in both))
    assert hooks.listed(hook.id).delivered == 1
    assert len({headers["loom-delivery"] for headers, _ in receiver.received}) == 1
    assert sorted(e["candidateId"] for e in receiver.taken()[0]["events"]) == [f"svc-{i:02d}" for i in range(4)]
