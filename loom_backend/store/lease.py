"""The Lease adapter: one holder per installation, so only one process delivers webhooks.

PostgreSQL: a session advisory lock on a connection of its own, held while that connection lives (a SIGKILLed
holder's connection closes and the lock frees). SQLite: an exclusive file lock beside the database file, freed by
the kernel when the holder dies; an in-memory database is one process's alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import threading
from pathlib import Path
from typing import IO, Any

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)
WEBHOOK_LEASE_KEY = 7453002  # beside the schema upgrade's 7453001


class DatabaseLease:
    def __init__(self, engine: Engine, key: int = WEBHOOK_LEASE_KEY) -> None:
        self._engine = engine
        self._key = key
        self._connection: Any = None
        self._file: IO[str] | None = None
        self._holding = False
        self._lock = threading.Lock()  # acquire, held and release come from worker threads
        url = make_url(str(engine.url))
        self._sqlite = engine.dialect.name == "sqlite"
        database = url.database if self._sqlite else None
        self._path = Path(f"{database}.lease-{key}") if database and database != ":memory:" else None

    def acquire(self) -> bool:
        with self._lock:
            if self._held():
                return True
            self._release()
            return self._take()

    def held(self) -> bool:
        with self._lock:
            return self._held()

    def release(self) -> None:
        with self._lock:
            self._release()

    def _take(self) -> bool:
        if self._sqlite:
            return self._lock_file()
        try:
            connection = self._engine.connect()
            got = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}).scalar()
            connection.commit()
        except Exception as exc:
            log.warning("Could not ask for the webhook lease: %s", exc)
            return False
        if not got:
            connection.close()
            return False
        self._connection = connection
        return True

    def _lock_file(self) -> bool:
        if self._path is None:
            self._holding = True
            return True
        handle = open(self._path, "a")  # noqa: SIM115  (held open while the lease is)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._file = handle
        self._holding = True
        return True

    def _held(self) -> bool:
        if self._sqlite:
            return self._holding
        if self._connection is None:
            return False
        try:
            self._connection.execute(text("SELECT 1"))
            self._connection.commit()
        except Exception:
            return False
        return True

    def _release(self) -> None:
        self._holding = False
        if self._file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": self._key})
                self._connection.commit()
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None
