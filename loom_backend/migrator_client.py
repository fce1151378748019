"""httpx adapter for the MigratorNotifier port: dispatch a Step, or ask a Migrator for a dry run."""

from __future__ import annotations

import httpx
import pydantic

from loom_backend import errors
from loom_backend.domain import DispatchStepRequest, DryRunRequest, DryRunResult

MAX_ERROR_TEXT = 500


class DispatchFailed(Exception):
    """The Migrator is down or answered 5xx: worth another attempt."""


class DispatchRejected(Exception):
    """The Migrator answered 4xx: the request itself is wrong, so retrying cannot help."""


def _excerpt(response: httpx.Response) -> str:
    text = response.text.strip() or response.reason_phrase
    return text[:MAX_ERROR_TEXT]


class HttpMigratorNotifier:
    """One shared connection pool for every dispatch, sized for bursts of hundreds of Runs.

    httpx's default pool (100 connections, 5 s pool timeout) times out when hundreds of
    dispatches start at once, so the pool is larger and waiting for a connection is bounded
    by the dispatch timeout rather than by httpx's default.
    """

    def __init__(
        self,
        timeout_seconds: float = 10.0,
        max_connections: int = 400,
        max_keepalive_connections: int = 100,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._client = client or httpx.AsyncClient(
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_keepalive_connections,
                keepalive_expiry=30.0,
            ),
            timeout=httpx.Timeout(timeout_seconds, connect=min(5.0, timeout_seconds), pool=timeout_seconds),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def dispatch_step(self, request: DispatchStepRequest) -> None:
        url = f"{request.migrator_url.rstrip('/')}/dispatch-step"
        try:
            response = await self._client.post(url, json=request.model_dump(mode="json", by_alias=True))
        except httpx.HTTPError as exc:
            raise DispatchFailed(f"Migrator at {request.migrator_url} could not be reached: {exc!r}") from exc
        if response.is_success:
            return
        message = f"Migrator at {request.migrator_url} answered {response.status_code}: {_excerpt(response)}"
        if 400 <= response.status_code < 500:
            raise DispatchRejected(message)
        raise DispatchFailed(message)

    async def dry_run(self, migrator_url: str, request: DryRunRequest) -> DryRunResult:
        url = f"{migrator_url.rstrip('/')}/dry-run"
        try:
            response = await self._client.post(url, json=request.model_dump(mode="json", by_alias=True))
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
