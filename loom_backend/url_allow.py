"""Which Migrator URLs Loom will call: an allow-list of host patterns, minus addresses that are never safe.

A Migrator chooses its own `migratorUrl`, so without a check anyone holding a Migrator token could
make Loom post to any address it can reach: the cloud metadata service, an admin port on localhost,
a host on another network. The check runs at announce and again, with fresh DNS answers, before
every dispatch and dry run, since a name can point somewhere else later.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str], Awaitable[list[str]]]

DEFAULT_MIGRATOR_URL_ALLOW = "127.0.0.0/8,::1,localhost,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16"
# Link-local (where cloud metadata services live) and the metadata services' own names and addresses.
ALWAYS_REFUSED_NETWORKS: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),
)
ALWAYS_REFUSED_NAMES = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
RESOLVE_TIMEOUT_SECONDS = 5.0


class UrlRefused(Exception):
    """Loom must not call this URL; the message names the host and what to change."""


async def resolve(host: str) -> list[str]:
    """Every address the host resolves to now, as the connection would see them."""
    loop = asyncio.get_running_loop()
    infos = await asyncio.wait_for(
        loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), timeout=RESOLVE_TIMEOUT_SECONDS
    )
    return sorted({str(info[4][0]) for info in infos})


def _ip(value: str) -> IPAddress | None:
    try:
        address = ipaddress.ip_address(value.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class MigratorUrlPolicy:
    """`patterns` are CIDR networks (`10.0.0.0/8`, `::1`), host names (`localhost`), wildcards (`*.svc.local`),
    or `*` for any host; link-local and cloud metadata addresses are refused whatever the patterns say."""

    def __init__(
        self,
        patterns: str | Iterable[str] = DEFAULT_MIGRATOR_URL_ALLOW,
        resolver: Resolver = resolve,
        setting: str = "LOOM_MIGRATOR_URL_ALLOW",
    ):
        self.setting = setting
        items = [p.strip().lower() for p in (patterns.split(",") if isinstance(patterns, str) else patterns)]
        self.patterns = [p for p in items if p]
        self.networks: list[IPNetwork] = []
        self.names: list[str] = []
        for pattern in self.patterns:
            try:
                self.networks.append(ipaddress.ip_network(pattern, strict=False))
            except ValueError:
                if not all(c.isalnum() or c in "-.*" for c in pattern):
                    raise ValueError(
                        f"{setting}: {pattern!r} is neither a network (10.0.0.0/8) nor a host pattern "
                        "(name.example, *.example)"
                    ) from None
                self.names.append(pattern)
        self.any_host = "*" in self.names
        self._resolve = resolver

    def _describe(self) -> str:
        return ", ".join(self.patterns) or "nothing"

    async def check(self, url: str, label: str = "migratorUrl") -> None:
        """Raise UrlRefused unless every address the URL's host resolves to now may be called; `label` names the
        field in the message."""
        try:
            host = (urlsplit(url).hostname or "").rstrip(".")
        except ValueError:
            host = ""
        if not host:
            raise UrlRefused(f"{label} {url!r} has no host")
        if host in ALWAYS_REFUSED_NAMES:
            raise UrlRefused(f"{label} {url!r} is refused: {host} is a cloud metadata address")
        literal = _ip(host)
        name_allowed = literal is None and any(fnmatch.fnmatchcase(host, name) for name in self.names)
        if literal is not None:
            addresses = [literal]
        else:
            try:
                found = await self._resolve(host)
            except (OSError, TimeoutError) as exc:
                raise UrlRefused(f"{label} {url!r} is refused: {host} could not be resolved ({exc})") from exc
            addresses = [a for a in (_ip(f) for f in found) if a is not None]
            if not addresses:
                raise UrlRefused(f"{label} {url!r} is refused: {host} resolves to no address")
        for address in addresses:
            if any(address in network for network in ALWAYS_REFUSED_NETWORKS):
                raise UrlRefused(
                    f"{label} {url!r} is refused: {host} is (or resolves to) {address}, a link-local or cloud "
                    "metadata address, which Loom never calls"
                )
            if name_allowed or self.any_host:
                continue
            if not any(address.version == n.version and address in n for n in self.networks):
                raise UrlRefused(
                    f"{label} {url!r} is refused: {host} ({address}) is not allowed by {self.setting} "
                    f"({self._describe()}); use a URL on an allowed host, or ask an admin to allow this one"
                )
