"""The change feed inside one process: one source publishes, every open page's subscription receives.

The store writes from worker threads, so `publish` is thread-safe; subscriptions live on the event loop that serves
the pages. A page that falls far behind gets "anything may have changed" instead of an ever-longer list.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

from loom_backend.domain import ReadModelChange

MAX_PENDING = 500


class Subscription:
    def __init__(self) -> None:
        self._pending: list[ReadModelChange] = []
        self._arrived = asyncio.Event()
        self._pending_generation = 0
        self.seen = 0  # the feed's generation as of the newest change `next` returned

    def _push(self, change: ReadModelChange, generation: int) -> None:
        self._pending_generation = max(self._pending_generation, generation)
        if len(self._pending) >= MAX_PENDING:
            self._pending = [ReadModelChange()]
        else:
            self._pending.append(change)
        self._arrived.set()

    async def next(self, timeout: float) -> list[ReadModelChange]:
        if not self._pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), timeout)
        changes, self._pending = self._pending, []
        self.seen = max(self.seen, self._pending_generation)
        self._arrived.clear()
        return changes


class ChangeHub:
    """The ChangeFeed port: fans one process's change source out to its subscribers."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop or asyncio.get_running_loop()
        self._subscribers: set[Subscription] = set()
        self.published = 0
        self._generation = 0
        self._lock = threading.Lock()

    @property
    def generation(self) -> int:
        """How many changes were published so far: a read made at one generation may be shared until the next."""
        return self._generation

    def publish(self, change: ReadModelChange) -> None:
        """Hand a committed change to every subscriber; callable from any thread. The generation moves at once,
        in the committing thread, so no read after the commit is answered from before it."""
        with self._lock:
            self._generation += 1
            generation = self._generation
        if self._loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody is listening
            self._loop.call_soon_threadsafe(self._fan_out, change, generation)

    def _fan_out(self, change: ReadModelChange, generation: int) -> None:
        self.published += 1
        for subscriber in self._subscribers:
            subscriber._push(change, generation)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        subscription = Subscription()
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
