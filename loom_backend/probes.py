"""Readiness of what Loom depends on besides its database and Temporal: Redis, when web replicas share page state."""

from __future__ import annotations

import asyncio

from loom_backend.domain import ReadinessCheck

PROBE_TIMEOUT_SECONDS = 2.0


class RedisProbe:
    """Redis answers PING: without it no board page of this replica can load or change its state."""

    def __init__(self, url: str) -> None:
        from redis.asyncio import Redis

        self._redis = Redis.from_url(url, socket_connect_timeout=PROBE_TIMEOUT_SECONDS)

    async def readiness(self) -> list[ReadinessCheck]:
        try:
            await asyncio.wait_for(self._ping(), PROBE_TIMEOUT_SECONDS)
        except Exception as exc:
            detail = f"Redis does not answer: {type(exc).__name__}: {exc}"[:500]
            return [ReadinessCheck(name="redis", ok=False, detail=detail)]
        return [ReadinessCheck(name="redis", ok=True)]

    async def _ping(self) -> None:
        await self._redis.ping()  # type: ignore[misc]

    async def aclose(self) -> None:
        await self._redis.aclose()
