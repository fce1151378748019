"""Loom's database refuses writes for a while with Runs in flight: no Step fails, the Migrator is not blamed.

PostgreSQL: the database is switched to read-only and Loom's connections are cut, as a failover to a replica
does. SQLite: another connection holds the write lock for longer than Loom's busy timeout, as a backup or an
operator's `sqlite3` session in a transaction does (root ignores file permissions, so a chmod proves nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from loom_backend.execution.messages import READ_MODEL_UNAVAILABLE
from tests.chaos.scene import CANDIDATES, RUNS, Scene, scene
from tests.harness import eventually

SQLITE_BUSY_TIMEOUT = 30  # seconds: create_db_engine's


@contextlib.contextmanager
def postgres_read_only(url: str) -> Iterator[None]:
    """Every new transaction read-only and every open connection cut; then writable, and cut again."""
    name = make_url(url).database
    admin = create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")

    def cut_connections() -> None:
        connection.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :db"), {"db": name}
        )

    with admin.connect() as connection:
        connection.execute(text(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on'))
        cut_connections()
        try:
            yield
        finally:
            connection.execute(text(f'ALTER DATABASE "{name}" RESET default_transaction_read_only'))
            cut_connections()  # a session keeps the default it started with
    admin.dispose()


@contextlib.contextmanager
def sqlite_locked(url: str) -> Iterator[None]:
    """Another connection holds SQLite's write lock (BEGIN IMMEDIATE) until the block ends."""
    holder = sqlite3.connect(make_url(url).database, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        yield
        holder.execute("ROLLBACK")
    finally:
        holder.close()


def unwritable(url: str) -> contextlib.AbstractContextManager[None]:
    return sqlite_locked(url) if url.startswith("sqlite") else postgres_read_only(url)


async def retry_notices(stage: Scene) -> dict[str, str]:
    """Steps that show a dispatch retry right now, that is: a Migrator found unreachable."""
    found = {}
    for c in CANDIDATES:
        for step in await stage.steps(c):
            if "dispatchRetryAttempt" in step["metadata"]:
                found[f"{c}/{step['stepName']}"] = step["metadata"].get("dispatchRetryError", "")
    return found


async def test_a_briefly_unwritable_database_fails_no_step_blames_no_migrator_and_every_run_finishes(
    temporal_address: str, database_url: str, tmp_path: Path
) -> None:
    # On SQLite the lock must outlast the busy timeout, or Loom's writes would just wait and go through.
    seconds = SQLITE_BUSY_TIMEOUT + 5 if database_url.startswith("sqlite") else 8
    # Waits on the database back off as a Migrator's do; capped at 2 s, the Runs resume promptly once it is writable.
    async with scene(temporal_address, database_url, tmp_path, dispatch_backoff_max_seconds="2") as stage:
        await stage.under_way()
        notices: dict[str, str] = {}
        with unwritable(database_url):
            loop = asyncio.get_running_loop()
            until = loop.time() + seconds
            while loop.time() < until:
                notices |= await retry_notices(stage)
                await asyncio.sleep(1)

        async def done() -> bool:
            nonlocal notices
            notices |= await retry_notices(stage)
            return await stage.completed() == RUNS

        await eventually(done, 40, "every Run completes", interval=0.5)
        await stage.finished()  # and the callbacks still under way answered
        failures = await stage.dispatch_failures()
    assert notices == {}, "no Step said the Migrator was unreachable"
    assert set(failures) == {READ_MODEL_UNAVAILABLE}, f"every failed dispatch attempt named Loom's database: {failures}"
    assert stage.migrator.attempts == len(stage.migrator.dispatches), "the Migrator took every call it got"
    stage.audit()
