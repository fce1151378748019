"""The Migrator's side of Loom's HTTP API: announce, submit Candidates, post Step status callbacks.

Every call carries the Migrator's token as `Authorization: Bearer`; Loom answers 401 without one.

Every call retries with backoff on network errors, 5xx, 408 and 429, and stops on any other 4xx:
a 4xx means Loom understood and refused (an unknown Run, a Step it no longer waits on, an invalid
announcement), so sending the same request again cannot help.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from pydantic import BaseModel

from loom_migrator.backoff import ANNOUNCE_BACKOFF, CALLBACK_BACKOFF, Backoff
from loom_migrator.wire import Candidate, MigrationAnnouncement, StepStatusEvent, SubmitCandidatesRequest

log = logging.getLogger("loom_migrator")

RETRYABLE_4XX = frozenset({408, 429})


class LoomError(Exception):
    """A call to Loom did not get through."""


class LoomRejected(LoomError):
    """Loom answered 4xx: the request is wrong or no longer wanted, so it is not retried."""

    def __init__(self, what: str, status_code: int, reason: str) -> None:
        super().__init__(f"Loom refused to {what}: HTTP {status_code}: {reason}")
        self.status_code = status_code
        self.reason = reason


class LoomUnreachable(LoomError):
    """Every attempt failed on the network or with a 5xx."""


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    if isinstance(body, dict):
        for key in ("message", "detail", "error"):
            if key in body:
                return str(body[key])[:500]
    return str(body)[:500]


class LoomClient:
    """An httpx client for Loom's Migrator-facing routes, with the retry policy built in."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        announce_backoff: Backoff = ANNOUNCE_BACKOFF,
        callback_backoff: Backoff = CALLBACK_BACKOFF,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.announce_backoff = announce_backoff
        self.callback_backoff = callback_backoff
        self.timeout = timeout
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _client(self) -> httpx.AsyncClient:
        # A pooled client belongs to the event loop that made it; a new loop gets a new client.
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop:
            self._http = httpx.AsyncClient(
                headers={"Authorization": f"Bearer {self.token}"} if self.token else None,
                timeout=httpx.Timeout(self.timeout, pool=30.0),
                # Every connection may stay open: past max_keepalive_connections httpcore closes and reopens them.
                limits=httpx.Limits(max_connections=50, max_keepalive_connections=50),
            )
            self._loop = loop
        return self._http

    async def aclose(self) -> None:
        if self._http is not None and self._loop is asyncio.get_running_loop():
            await self._http.aclose()
        self._http = None
        self._loop = None

    async def announce(self, announcement: MigrationAnnouncement) -> None:
        await self._post(
            "/api/registry/announce", announcement, f"accept Migration {announcement.id!r}", self.announce_backoff
        )

    async def submit_candidates(self, migration_id: str, candidates: list[Candidate]) -> None:
        await self._post(
            f"/api/migrations/{migration_id}/candidates",
            SubmitCandidatesRequest(candidates=candidates),
            f"take {len(candidates)} Candidates for Migration {migration_id!r}",
            self.announce_backoff,
        )

    async def post_event(self, callback_id: str, event: StepStatusEvent) -> None:
        await self._post(
            f"/api/event/{callback_id}",
            event,
            f"take status {event.status.value!r} of Step {event.step_name!r} for Run {callback_id!r}",
            self.callback_backoff,
        )

    async def _post(self, path: str, payload: BaseModel, what: str, backoff: Backoff) -> httpx.Response:
        url = self.base_url + path
        body: Any = payload.model_dump(mode="json", by_alias=True)
        delays = backoff.delays()
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._client().post(url, json=body)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if response.status_code < 400:
                    return response
                if response.status_code < 500 and response.status_code not in RETRYABLE_4XX:
                    error = LoomRejected(what, response.status_code, _reason(response))
                    log.error("%s (POST %s); not retrying", error, url)
                    raise error
                problem = f"HTTP {response.status_code}: {_reason(response)}"
            delay = next(delays, None)
            if delay is None:
                message = f"Could not reach Loom to {what} after {attempt} attempts (POST {url}): {problem}"
                log.error(message)
                raise LoomUnreachable(message)
            log.warning(
                "Loom did not %s (POST %s, attempt %d): %s; retrying in %.2fs", what, url, attempt, problem, delay
            )
            await asyncio.sleep(delay)
