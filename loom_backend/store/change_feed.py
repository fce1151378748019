"""Where a process's change feed comes from: PostgreSQL's LISTEN/NOTIFY, or, on SQLite, the store's own writes.

PostgreSQL: every process's writes are NOTIFY'd on commit (SqlStore._notify) and each process LISTENs once, so a
change made through any replica or worker reaches the pages open on every replica. SQLite has no NOTIFY: the store
tells its listeners of this process's writes, and a slow poll of the activity marker catches the others' writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy.engine import make_url

from loom_backend.domain import ReadModelChange
from loom_backend.store.sql_store import CHANGE_CHANNEL, SqlStore

log = logging.getLogger("loom.changes")
Publish = Callable[[ReadModelChange], None]
RECONNECT_SECONDS = 1.0
OTHER_WRITERS_POLL_SECONDS = 2.0


def libpq_url(sqlalchemy_url: str) -> str:
    """The SQLAlchemy URL as psycopg takes it (no `+psycopg` driver suffix)."""
    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def listen_postgres(url: str, publish: Publish, connected: asyncio.Event | None = None) -> None:
    """LISTEN on Loom's channel for as long as the process runs; after a lost connection, say anything changed."""
    import psycopg

    first = True
    while True:
        try:
            async with await psycopg.AsyncConnection.connect(libpq_url(url), autocommit=True) as connection:
                await connection.execute(f"LISTEN {CHANGE_CHANNEL}")
                if not first:
                    log.warning("Listening for changes again; open boards reload")
                    publish(ReadModelChange())
                first = False
                if connected is not None:
                    connected.set()
                async for notification in connection.notifies():
                    publish(ReadModelChange.from_payload(notification.payload))
        except (psycopg.Error, OSError) as exc:
            log.warning("The change feed lost PostgreSQL (%s); boards follow again once it is back", exc)
            await asyncio.sleep(RECONNECT_SECONDS)


async def follow_sqlite(store: SqlStore, publish: Publish, every_seconds: float = OTHER_WRITERS_POLL_SECONDS) -> None:
    """This process's writes as they commit; other processes' (a `loom worker` on the same file) within a poll.

    The poll reports "anything changed" only when the marker moved in a quiet interval without writes of our own,
    so a busy process does not reload every board wholesale each poll.
    """
    local = 0

    def on_commit(change: ReadModelChange) -> None:
        nonlocal local
        local += 1
        publish(change)

    store.listeners.append(on_commit)
    try:
        marker = await asyncio.to_thread(store.activity_marker)
        while True:
            seen = local
            await asyncio.sleep(every_seconds)
            try:
                moved = await asyncio.to_thread(store.activity_marker)
            except Exception:
                continue
            if moved != marker and local == seen:
                publish(ReadModelChange())
            marker = moved
    finally:
        store.listeners.remove(on_commit)
