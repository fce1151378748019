"""The HTTP client Loom calls out with (Migrators, webhooks): httpx's API over aiohttp's connection pool.

httpcore's pool scans every pooled connection on each request (an idle and readability check per connection),
which cost 2.5 CPU-ms per request with 16 in flight; the same request over aiohttp's pool costs 0.5
(httpx-aiohttp's transport; bench/runs.py prints the CPU per Step). Callers keep httpx's requests, responses and
errors. As before: proxies from the environment (HTTP_PROXY, HTTPS_PROXY, NO_PROXY), no redirects followed, httpx's
trust store (certifi, or SSL_CERT_FILE), and a fresh DNS answer for every new connection (no resolver cache), as the
URL policy checks them.
"""

from __future__ import annotations

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport


def pooled_client(*, max_connections: int, keepalive_seconds: float, timeout: httpx.Timeout) -> httpx.AsyncClient:
    """A client with at most `max_connections` open, idle ones closed after `keepalive_seconds`."""

    def session() -> aiohttp.ClientSession:  # made on first use, inside the event loop that uses it
        connector = aiohttp.TCPConnector(
            limit=max_connections,
            keepalive_timeout=keepalive_seconds,
            use_dns_cache=False,
            ssl=httpx.create_ssl_context(),
        )
        return aiohttp.ClientSession(connector=connector, trust_env=True)

    return httpx.AsyncClient(transport=AiohttpTransport(client=session), timeout=timeout, follow_redirects=False)
