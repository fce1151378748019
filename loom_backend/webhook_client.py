"""HTTP adapter for WebhookSender: one signed POST per message, the delivery id in a header for deduplication."""

from __future__ import annotations

import httpx

from loom_backend import errors
from loom_backend.outbound_http import pooled_client
from loom_backend.signing import sign
from loom_backend.url_allow import MigratorUrlPolicy, UrlRefused

DELIVERY_HEADER = "Loom-Delivery"  # the same on every retry of one message: receivers drop repeats by it
EVENT_HEADER = "Loom-Webhook"
KEEPALIVE_SECONDS = 4.0  # under the 5 s idle timeout of common servers, as for Migrators


class HttpWebhookSender:
    def __init__(
        self, url_policy: MigratorUrlPolicy, timeout_seconds: float = 10.0, client: httpx.AsyncClient | None = None
    ) -> None:
        self.url_policy = url_policy
        self._client = client or pooled_client(
            max_connections=20, keepalive_seconds=KEEPALIVE_SECONDS, timeout=httpx.Timeout(timeout_seconds)
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def check_url(self, url: str) -> None:
        if not url.lower().startswith(("http://", "https://")):
            raise errors.InvalidInput(f"url {url!r} must start with http:// or https://", field="url")
        try:
            await self.url_policy.check(url, label="url")
        except UrlRefused as exc:
            raise errors.InvalidInput(str(exc), field="url") from exc

    async def send(self, url: str, key: bytes, delivery_id: str, body: bytes) -> tuple[int | None, str | None]:
        try:
            await self.url_policy.check(url, label="url")
        except UrlRefused as exc:
            return None, str(exc)
        target = httpx.URL(url)
        headers = {
            "content-type": "application/json",
            DELIVERY_HEADER: delivery_id,
            **sign(key, "POST", target.path, body),
        }
        try:
            response = await self._client.post(target, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return None, f"no answer from {target.host}: {exc!r}"
        if response.is_success:
            return response.status_code, None
        return response.status_code, f"HTTP {response.status_code}: {response.text[:300]}"
