"""The address guard: http(s) only, and no loopback, private, link-local, multicast, reserved or
cloud-metadata address unless the host is explicitly allowed. Every URL of a fetch, and every
hop the guarding proxy (core/ingest/proxy.py) is asked to connect to, passes `UrlGuard.address`,
which also names the one address to connect to (no second DNS lookup for a rebinding name to
change)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from core.errors import BadSource

Resolver = Callable[[str], list[str]]

METADATA_HOSTS = {"metadata.google.internal", "metadata", "instance-data"}
PRIVATE = "That link points inside a private network, which I don't fetch."
BAD_REDIRECT = "That link redirects to an address that isn't valid, so I can't follow it."


def system_resolver(host: str) -> list[str]:
    try:
        return list({str(ai[4][0]) for ai in socket.getaddrinfo(host, None)})
    except socket.gaierror as e:
        raise BadSource(f"I can't find the site `{host}` (DNS lookup failed).") from e


def _parse_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    h = host.strip("[]").split("%")[0]
    try:
        return ipaddress.ip_address(h)
    except ValueError:
        pass
    # inet_aton forms browsers and curl accept: decimal (2130706433), hex (0x7f000001), octal, short.
    try:
        return ipaddress.IPv4Address(socket.inet_aton(h))
    except OSError:
        return None


def is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        for embedded in (ip.ipv4_mapped, ip.sixtofour, ip.teredo[1] if ip.teredo else None):
            if embedded is not None:
                return is_public(embedded)
        if ip in ipaddress.ip_network("64:ff9b::/96"):  # NAT64 of an IPv4 address
            return is_public(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_link_local
                                 or ip.is_loopback or ip.is_private or ip.is_unspecified)


@dataclass(frozen=True)
class UrlGuard:
    allow_hosts: frozenset[str] = frozenset()
    resolver: Resolver = field(default=system_resolver)

    def check(self, url: str) -> None:
        """Raise BadSource unless `url` is http(s) to a public address (or an allowed host)."""
        self.address(url)

    def address(self, url: str) -> str:
        """The checked address to connect to for `url` (the host itself when allowed by name)."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as e:
            raise BadSource("That doesn't look like a valid link.") from e
        if parts.scheme not in ("http", "https"):
            raise BadSource("I only fetch http and https links.")
        host = (parts.hostname or "").lower().rstrip(".")
        if not host:
            raise BadSource("That link has no host name.")
        if port == 0:
            raise BadSource("That doesn't look like a valid link.")
        if host in self.allow_hosts:
            return host
        if host in METADATA_HOSTS or host == "localhost" or host.endswith(".localhost"):
            raise BadSource(PRIVATE)
        ip = _parse_ip(host)
        addresses = [ip] if ip else [_parse_ip(a) for a in self.resolver(host)]
        if not addresses or any(a is None or not is_public(a) for a in addresses):
            raise BadSource(PRIVATE)
        first = addresses[0]
        assert first is not None
        return str(first.ipv4_mapped or first) if isinstance(first, ipaddress.IPv6Address) else str(first)
