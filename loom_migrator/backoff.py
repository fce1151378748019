"""The retry policy the SDK uses for every call to Loom; tests pass one with tiny delays."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter, capped; `max_attempts=None` retries until Loom answers."""

    initial: float = 0.5
    factor: float = 2.0
    max_delay: float = 30.0
    max_attempts: int | None = None
    jitter: float = 0.1

    def delays(self) -> Iterator[float]:
        """The pauses between attempts: one fewer than the attempts allowed."""
        delay = self.initial
        attempt = 1
        while self.max_attempts is None or attempt < self.max_attempts:
            spread = delay * self.jitter
            yield max(0.0, delay + random.uniform(-spread, spread))
            delay = min(delay * self.factor, self.max_delay)
            attempt += 1

    def with_max_attempts(self, max_attempts: int | None) -> Backoff:
        return Backoff(self.initial, self.factor, self.max_delay, max_attempts, self.jitter)


# Announcing waits for Loom however long it takes to start; a Step's callback gives up after
# about seven minutes, since a Loom that long gone will re-dispatch the Step on Retry anyway.
ANNOUNCE_BACKOFF = Backoff()
CALLBACK_BACKOFF = Backoff(max_attempts=20)
