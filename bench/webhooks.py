"""How fast the webhook deliverer turns a backlog of the event log into digests, on SQLite and PostgreSQL.

3,000 Candidates of ten teams; 30,000 events in the log, of which 3,000 failed Steps (the rest dispatches and
updates no hook hears); ten hooks, one per team (`--filter owner=team-N`), so each hears 300 failures. One
deliverer (no digest window) reads the backlog past each hook's cursor, filters by Candidate metadata, builds the
digests and posts them to a real HTTP receiver on 127.0.0.1. Figures: wall time until every hook's message was
taken, this process's CPU, messages and their size.

    .venv/bin/python bench/webhooks.py [--events 30000] [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import text  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from loom_backend.domain import (  # noqa: E402
    Candidate,
    EventType,
    MigrationAnnouncement,
    RunChange,
    StepDefinition,
    StepEvent,
    StepStatus,
    run_id,
)
from loom_backend.notifications import WebhookAdmin, WebhookDeliverer  # noqa: E402
from loom_backend.store.lease import DatabaseLease  # noqa: E402
from loom_backend.store.sql_store import SqlStore  # noqa: E402
from loom_backend.store.webhook_store import SqlWebhookStore  # noqa: E402
from loom_backend.url_allow import MigratorUrlPolicy  # noqa: E402
from loom_backend.webhook_client import HttpWebhookSender  # noqa: E402
from loom_backend.webhooks import NotificationKind, WebhookRequest  # noqa: E402
from tests.harness import free_port, serve  # noqa: E402

M, TEAMS, CANDIDATES = "bench", 10, 3_000


def fill(store: SqlStore, events: int) -> None:
    now = datetime.now(UTC)
    store.announce(
        MigrationAnnouncement(
            id=M,
            name="bench",
            description="",
            steps=[StepDefinition(name="bump", migrator_app="bench")],
            candidates=[
                Candidate(id=f"c{i:05d}", kind="service", metadata={"owner": f"team-{i % TEAMS}"})
                for i in range(CANDIDATES)
            ],
            migrator_url="http://127.0.0.1:9",
        ),
        now,
    )
    per_candidate = events // CANDIDATES
    for i in range(CANDIDATES):
        cid = f"c{i:05d}"
        changes = []
        for n in range(per_candidate):
            failed = n == per_candidate - 1
            event = StepEvent(
                run_id=run_id(M, cid),
                migration_id=M,
                candidate_id=cid,
                step_name="bump",
                event_type=EventType.STEP_COMPLETED if failed else EventType.STEP_DISPATCHED,
                status=StepStatus.FAILED if failed else StepStatus.IN_PROGRESS,
                metadata={"error": "exit 1"} if failed else {},
                created_at=now,
            )
            changes.append(RunChange(event=event, event_key=f"{cid}:{n}"))
        store.apply_run_changes(run_id(M, cid), M, cid, changes)


async def measure(url: str, events: int) -> dict[str, float]:
    store = SqlStore(url)
    store.upgrade_schema()
    fill(store, events)
    taken: list[int] = []

    async def hook(request: Request) -> Response:
        taken.append(len(await request.body()))
        return Response("ok")

    port = free_port()
    sender = HttpWebhookSender(MigratorUrlPolicy("127.0.0.0/8"))
    hooks = SqlWebhookStore(store)
    admin = WebhookAdmin(hooks, sender)
    for team in range(TEAMS):
        request = WebhookRequest(
            url=f"http://127.0.0.1:{port}/hook", events=[NotificationKind.STEP_FAILED], filter={"owner": f"team-{team}"}
        )
        await admin.create("bench", request)
    with store.engine.begin() as connection:  # the hooks start at the log's beginning: the whole backlog is theirs
        connection.execute(text("UPDATE webhooks SET cursor = 0"))
    deliverer = WebhookDeliverer(
        hooks, sender, DatabaseLease(store.engine), public_url="https://loom.example.com", digest_seconds=0
    )
    async with serve(Starlette(routes=[Route("/hook", hook, methods=["POST"])]), port):
        wall, cpu = time.perf_counter(), time.process_time()
        end = hooks.event_ids_after(0, 10**9)[-1]

        def done() -> bool:
            return all(t.cursor >= end and p is None for t, p in hooks.targets())

        while not done():
            await deliverer.tick()
            await deliverer.drain()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    deliverer.lease.release()
    await sender.aclose()
    store.engine.dispose()
    return {"wall_s": wall, "cpu_s": cpu, "messages": len(taken), "bytes_per_message": sum(taken) / len(taken)}


def databases(postgres: str | None) -> Iterator[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        yield "sqlite", f"sqlite:///{tmp}/loom.db"
    if postgres:
        from tests.postgres import fresh_database

        with fresh_database(postgres) as url:
            yield "postgresql", url


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--postgres", default=os.environ.get("LOOM_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    for name, url in databases(args.postgres):
        figures = asyncio.run(measure(url, args.events))
        print(
            f"{name:<10} {args.events:,} events, {TEAMS} hooks x {CANDIDATES // TEAMS} failures: "
            f"{figures['wall_s']:.2f} s wall, {figures['cpu_s']:.2f} s CPU, {figures['messages']:.0f} messages "
            f"of {figures['bytes_per_message'] / 1024:.0f} KiB ({args.events * TEAMS / figures['wall_s']:,.0f} "
            "events scanned/s over all hooks)"
        )


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
