"""HTTP adapter for the MigratorNotifier port: dispatch a Step, or ask a Migrator for a dry run.

Every request is signed with the owning Migrator token's key (see signing.py) and goes only to
addresses the URL policy allows, checked with fresh DNS answers right before the call.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
import pydantic
from opentelemetry.trace import SpanKind

from loom_backend import errors, tracing
from loom_backend.domain import DispatchStepRequest, DryRunRequest, DryRunResult
from loom_backend.outbound_http import pooled_client
from loom_backend.signing import sign
from loom_backend.url_allow import MigratorUrlPolicy, UrlRefused

log = logging.getLogger("loom")
SigningKeys = Callable[[str], Awaitable[bytes | None]]

MAX_ERROR_TEXT = 500
# Below the idle timeout of common Migrator servers (uvicorn 5 s, Node 5 s, nginx 75 s).
KEEPALIVE_EXPIRY_SECONDS = 4.0
# Requests to one Migrator at once; it answers a dispatch at once (202), so a few keep up.
MAX_IN_FLIGHT = 16
# 4xx answers that say "not now" rather than "never": request timeout, too early, too many requests.
RETRYABLE_4XX = frozenset({408, 425, 429})


class DispatchFailed(Exception):
    """The Migrator is down or answered 5xx: worth another attempt."""


class DispatchRejected(Exception):
    """The Migrator answered 4xx: the request itself is wrong, so retrying cannot help."""


def _excerpt(response: httpx.Response) -> str:
    text = response.text.strip() or response.reason_phrase
    return text[:MAX_ERROR_TEXT]


@functools.lru_cache(maxsize=4096)  # parsing and joining URLs was a fifth of a dispatch's CPU; URLs are immutable
def migrator_endpoint(migrator_url: str, route: str) -> httpx.URL:
    """`{migratorUrl}/{route}`, joined as URL paths join: the Migrator URL's own path kept, never a query or fragment."""
    base = httpx.URL(migrator_url)
    return base.copy_with(path=base.path.rstrip("/") + "/", query=None, fragment=None).join(route)


@dataclass
class _Lane:
    """One Migrator's connection pool, and its turns: requests to it that may be in flight at once."""

    client: httpx.AsyncClient
    turns: asyncio.Semaphore


class HttpMigratorNotifier:
    """A small connection pool per Migrator, with at most `max_in_flight` requests to it at once.

    More requests wait their turn here (bounded by the timeout) rather than in the pool: with 200
    Runs at once a single pool of hundreds of connections took 46% of the app's CPU (bench/runs.py,
    over httpcore); 16 per Migrator keep up with one that answers at once, as the contract asks. A
    slow Migrator holds only its own turns. Every connection may stay open, so none is closed and
    reopened under load.

    Idle connections are dropped after KEEPALIVE_EXPIRY_SECONDS, under the 5 s after which
    uvicorn and Node servers close them: reusing a connection the Migrator is closing fails
    the dispatch with a ReadError (seen 3 times in 1,000 dispatches in bench/runs.py), and the
    retry that follows costs the Step a second or more.
    """

    def __init__(
        self,
        timeout_seconds: float = 10.0,
        max_in_flight: int = MAX_IN_FLIGHT,
        client: httpx.AsyncClient | None = None,
        url_policy: MigratorUrlPolicy | None = None,
        signing_keys: SigningKeys | None = None,
    ) -> None:
        self.url_policy = url_policy or MigratorUrlPolicy()
        self._signing_keys = signing_keys
        self._timeout = timeout_seconds
        self._max_in_flight = max_in_flight
        self._client = client  # tests hand one in; otherwise each Migrator gets its own
        self._lanes: dict[str, _Lane] = {}

    def _lane(self, origin: httpx.URL) -> _Lane:
        key = f"{origin.scheme}://{origin.host}:{origin.port}"
        lane = self._lanes.get(key)
        if lane is None:
            client = self._client or pooled_client(
                max_connections=self._max_in_flight,
                keepalive_seconds=KEEPALIVE_EXPIRY_SECONDS,
                timeout=httpx.Timeout(self._timeout, connect=min(5.0, self._timeout)),
            )
            lane = self._lanes[key] = _Lane(client, asyncio.Semaphore(self._max_in_flight))
        return lane

    async def _post(self, url: httpx.URL, body: bytes, headers: dict[str, str]) -> httpx.Response:
        """POST once a turn is free; waiting for it counts against the timeout, as a full pool's wait would."""
        lane = self._lane(url)
        try:
            await asyncio.wait_for(lane.turns.acquire(), self._timeout)
        except TimeoutError as exc:
            raise httpx.PoolTimeout(f"{url}: no free connection within {self._timeout:.0f} s") from exc
        try:
            with tracing.tracer.start_as_current_span(f"migrator POST {url.path}", kind=SpanKind.CLIENT) as span:
                span.set_attribute("url.full", str(url))
                response = await lane.client.post(url, content=body, headers={**headers, **tracing.outgoing_headers()})
                span.set_attribute("http.response.status_code", response.status_code)
                return response
        finally:
            lane.turns.release()

    async def aclose(self) -> None:
        clients = {lane.client for lane in self._lanes.values()} | ({self._client} if self._client else set())
        self._lanes.clear()
        for client in clients:
            await client.aclose()

    async def check_url(self, migrator_url: str) -> None:
        try:
            await self.url_policy.check(migrator_url)
        except UrlRefused as exc:
            raise errors.InvalidInput(str(exc), field="migratorUrl") from exc

    async def _signed(self, migration_id: str, url: httpx.URL, body: bytes) -> dict[str, str]:
        """Content type and, when the Migration has an owning token, Loom's signature; unsigned requests get 401s."""
        headers = {"content-type": "application/json"}
        key = await self._signing_keys(migration_id) if self._signing_keys else None
        if key is not None:
            headers.update(sign(key, "POST", url.path, body))
        elif self._signing_keys is not None:
            log.warning("Migration %r has no active Migrator token: its requests go unsigned", migration_id)
        return headers

    async def dispatch_step(self, request: DispatchStepRequest) -> None:
        url = migrator_endpoint(request.migrator_url, "dispatch-step")
        try:
            await self.url_policy.check(request.migrator_url)
        except UrlRefused as exc:
            raise DispatchRejected(str(exc)) from exc
        body = request.model_dump_json(by_alias=True).encode()
        try:
            response = await self._post(url, body, await self._signed(request.migration_id, url, body))
        except httpx.HTTPError as exc:
            raise DispatchFailed(f"Migrator at {request.migrator_url} could not be reached: {exc!r}") from exc
        if response.is_success:
            return
        message = f"Migrator at {request.migrator_url} answered {response.status_code}: {_excerpt(response)}"
        if 400 <= response.status_code < 500 and response.status_code not in RETRYABLE_4XX:
            raise DispatchRejected(message)
        raise DispatchFailed(message)

    async def dry_run(self, migrator_url: str, request: DryRunRequest) -> DryRunResult:
        url = migrator_endpoint(migrator_url, "dry-run")
        await self.check_url(migrator_url)
        body = request.model_dump_json(by_alias=True).encode()
        try:
            response = await self._post(url, body, await self._signed(request.migration_id, url, body))
        except httpx.HTTPError as exc:
            raise errors.MigratorUnavailable(
                f"The Migrator at {migrator_url} could not be reached for a dry run ({exc!r}); "
                "check that it is running and try again"
            ) from exc
        if not response.is_success:
            raise errors.MigratorUnavailable(
                f"The Migrator at {migrator_url} answered {response.status_code} to the dry run: {_excerpt(response)}"
            )
        try:
            return DryRunResult.model_validate_json(response.content)
        except pydantic.ValidationError as exc:
            raise errors.MigratorUnavailable(
                f"The Migrator at {migrator_url} answered the dry run with something Loom cannot read: "
                f"{exc.error_count()} problem(s), first: {exc.errors()[0]['msg']}"
            ) from exc
