"""How Loom signs what it sends to a Migrator, and how a Migrator checks it: HMAC-SHA256 over the request.

`X-Loom-Signature: v2=<hex HMAC-SHA256 of "{X-Loom-Timestamp}\n{X-Loom-Nonce}\n{METHOD}\n{path}\n" + body>`,
where `path` is the URL path the request is sent to (`/dispatch-step`, or `/prefix/dry-run` under a Migrator URL with
a path; no query, percent-decoded). Covering the method and the path means a signature captured on one route cannot
be replayed against another; covering the timestamp bounds how long it is any good. The fields are separated by
newlines, which a path cannot hold, so no two requests share the signed text. (`v1=`, over the timestamp, nonce and
body only, is no longer sent or accepted.) The random nonce makes every request's signature unique, so a Migrator can
refuse a signature it has seen before as a replay even when Loom legitimately sends the same body twice within a
second (a retried dispatch).

Loom never keeps a Migrator's token, only its SHA-256; that same digest is the signing key.
A Migrator holds the token, so it derives the key itself (`signing_key(token)`) and needs no
second secret. Someone who reads Loom's database could sign requests *to* Migrators, but could
not call Loom *as* a Migrator, since Loom only accepts the token whose digest it stores.
Creating a new token (and revoking the old one) rotates both at once.

Stdlib only, so the Migrator SDK can use it without Loom's server dependencies.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Mapping

TIMESTAMP_HEADER = "X-Loom-Timestamp"
SIGNATURE_HEADER = "X-Loom-Signature"
NONCE_HEADER = "X-Loom-Nonce"
SIGNATURE_VERSION = "v2"
MAX_SKEW_SECONDS = 300


def token_digest(token: str) -> str:
    """SHA-256 of a token, hex: what Loom stores to recognise a token, and a Migrator's signing key."""
    return hashlib.sha256(token.encode()).hexdigest()


def signing_key(token: str) -> bytes:
    """The key Loom signs a Migrator's requests with, derived from the token the Migrator holds."""
    return bytes.fromhex(token_digest(token))


def signature(key: bytes, timestamp: str, nonce: str, method: str, path: str, body: bytes) -> str:
    """The `X-Loom-Signature` value of one request (see the module's docstring for what it covers)."""
    signed = f"{timestamp}\n{nonce}\n{method.upper()}\n{path}\n".encode() + body
    return f"{SIGNATURE_VERSION}={hmac.new(key, signed, hashlib.sha256).hexdigest()}"


def sign(key: bytes, method: str, path: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """The headers that make a request (its method, path and body, now) verifiable by the Migrator holding the key."""
    timestamp = str(int(time.time() if now is None else now))
    nonce = secrets.token_hex(16)
    return {
        TIMESTAMP_HEADER: timestamp,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: signature(key, timestamp, nonce, method, path, body),
    }


class SignatureRejected(Exception):
    """The request is unsigned, signed with another key, too old or too new, or a replay."""


class SignatureVerifier:
    """Checks Loom's signature on a request; remembers the signatures it accepted within the window to refuse replays.

    A signature older than the window is refused as stale anyway, so forgetting it then is safe.
    """

    def __init__(self, key: bytes, max_skew_seconds: int = MAX_SKEW_SECONDS) -> None:
        self._key = key
        self.max_skew_seconds = max_skew_seconds
        self._seen: set[str] = set()
        self._order: deque[tuple[float, str]] = deque()
        self._lock = threading.Lock()

    def verify(self, headers: Mapping[str, str], method: str, path: str, body: bytes, now: float | None = None) -> None:
        """Raise SignatureRejected unless Loom signed this method, path and body for this key, lately, once."""
        now = time.time() if now is None else now
        timestamp = _header(headers, TIMESTAMP_HEADER)
        nonce = _header(headers, NONCE_HEADER) or ""
        given = _header(headers, SIGNATURE_HEADER)
        if not timestamp or not given:
            raise SignatureRejected(
                f"the request is not signed: {TIMESTAMP_HEADER}, {NONCE_HEADER} and {SIGNATURE_HEADER} are required"
            )
        if len(nonce) > 128 or len(given) > 128:
            raise SignatureRejected("the signature headers are malformed")
        if not timestamp.isdigit() or len(timestamp) > 12:
            raise SignatureRejected(f"{TIMESTAMP_HEADER} must be a Unix time in seconds")
        if abs(now - int(timestamp)) > self.max_skew_seconds:
            raise SignatureRejected(
                f"the signature is stale: its timestamp is more than {self.max_skew_seconds} s from this clock"
            )
        if not given.startswith(f"{SIGNATURE_VERSION}="):
            raise SignatureRejected(
                f"{SIGNATURE_HEADER} must be a {SIGNATURE_VERSION}= signature (over the method, path, timestamp and "
                "body); upgrade the Loom that sent it"
            )
        expected = signature(self._key, timestamp, nonce, method, path, body)
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise SignatureRejected(
                "the signature does not match: the request was not signed by Loom for this token and this route"
            )
        with self._lock:
            while self._order and now - self._order[0][0] > 2 * self.max_skew_seconds:
                self._seen.discard(self._order.popleft()[1])
            if given in self._seen:
                raise SignatureRejected("the request is a replay: this signature was already accepted")
            self._seen.add(given)
            self._order.append((now, given))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    return value.strip() if value else None
