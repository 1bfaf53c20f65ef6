"""The SSRF guard: subscriber URLs must not reach the relay's own network.

A subscriber URL is attacker-controlled input that the relay will POST to from inside the
operator's network, so a URL aimed at loopback, a private range or a cloud metadata endpoint
would turn the relay into a proxy into that network. URLs are checked when they are registered
(`check_url`, giving a clear 4xx) and again at send time by `relay.delivery.http_client`, whose
resolver
refuses the same addresses, so a DNS answer that changes between the two (rebinding) gains
nothing.

The address rules are written out explicitly instead of leaning on `ipaddress.is_global` and
friends, whose answers for IPv4-mapped and other special IPv6 ranges changed between Python patch
releases; a security boundary should not move with the interpreter.
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: An injectable resolver (tests, alternative DNS): host, port → addresses, sync or async.
Resolver = Callable[[str, int], Iterable[str] | Awaitable[Iterable[str]]]

MAX_URL_LENGTH = 2048

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

_FORBIDDEN_V4: tuple[ipaddress.IPv4Network, ...] = (
    _V4("0.0.0.0/8"),  # "this network"; 0.0.0.0 reaches the local host on Linux
    _V4("10.0.0.0/8"),
    _V4("100.64.0.0/10"),  # CGNAT; also holds Alibaba's metadata 100.100.100.200
    _V4("127.0.0.0/8"),
    _V4("169.254.0.0/16"),  # link-local; holds 169.254.169.254 (AWS, GCP, Azure metadata)
    _V4("172.16.0.0/12"),
    _V4("192.0.0.0/24"),  # IETF protocol assignments
    _V4("192.0.2.0/24"),  # TEST-NET-1
    _V4("192.88.99.0/24"),  # deprecated 6to4 relay anycast
    _V4("192.168.0.0/16"),
    _V4("198.18.0.0/15"),  # benchmarking
    _V4("198.51.100.0/24"),  # TEST-NET-2
    _V4("203.0.113.0/24"),  # TEST-NET-3
    _V4("224.0.0.0/4"),  # multicast
    _V4("240.0.0.0/4"),  # reserved, includes 255.255.255.255
)

_FORBIDDEN_V6: tuple[ipaddress.IPv6Network, ...] = (
    _V6("::/96"),  # unspecified, loopback and deprecated IPv4-compatible addresses
    _V6("::ffff:0:0:0/96"),  # IPv4-translated (RFC 2765)
    _V6("64:ff9b:1::/48"),  # local-use NAT64
    _V6("100::/64"),  # discard-only
    _V6("2001::/32"),  # Teredo: the client IPv4 is obfuscated, so refuse the whole range
    _V6("2001:2::/48"),  # benchmarking
    _V6("2001:10::/28"),  # ORCHID
    _V6("2001:20::/28"),  # ORCHIDv2
    _V6("2001:db8::/32"),  # documentation
    _V6("3fff::/20"),  # documentation (RFC 9637)
    _V6("fc00::/7"),  # unique local; holds AWS's IPv6 metadata fd00:ec2::254
    _V6("fe80::/10"),  # link-local
    _V6("fec0::/10"),  # deprecated site-local
    _V6("ff00::/8"),  # multicast
)

_GLOBAL_UNICAST_V6 = _V6("2000::/3")
_NAT64 = _V6("64:ff9b::/96")
_SIX_TO_FOUR = _V6("2002::/16")

#: Named explicitly because some resolve only inside a cloud VPC, where a registration-time
#: lookup from elsewhere could not see what they point at.
_FORBIDDEN_NAMES = frozenset(
    {
        "localhost",
        "localhost.localdomain",
        "ip6-localhost",
        "ip6-loopback",
        "metadata",
        "metadata.google.internal",
        "instance-data",
        "instance-data.ec2.internal",
    }
)


class UnsafeURL(ValueError):
    """A URL the relay refuses to send to. The reason is short and never repeats the URL, so
    it can be shown to API clients and logged without leaking credentials or internal DNS."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form would actually reach, for the forms that route to one."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _SIX_TO_FOUR:
        return ip.sixtofour
    return None


def is_forbidden_ip(ip: IPAddress) -> bool:
    """True for any address a subscriber URL must not reach (see the module docstring)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return is_forbidden_ip(embedded)
        if ip not in _GLOBAL_UNICAST_V6:
            return True
        return any(ip in net for net in _FORBIDDEN_V6)
    return any(ip in net for net in _FORBIDDEN_V4)


def parse_ip(host: str) -> IPAddress | None:
    """`host` as an IP address if it is a literal (brackets and IPv6 zone ids accepted)."""
    candidate = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        return None


def is_forbidden_hostname(host: str) -> bool:
    """Names that mean "this machine" or "the metadata service" whatever DNS says."""
    name = host.strip().rstrip(".").lower()
    return name in _FORBIDDEN_NAMES or name.endswith(".localhost")


def check_url_syntax(url: str) -> None:
    """Refuse URLs that are malformed or could not be a plain public web endpoint.

    Parsed with httpx, the same parser the sending client uses, so the host checked here is
    the host that will be connected to.
    """
    if len(url) > MAX_URL_LENGTH:
        raise UnsafeURL(f"URL is longer than {MAX_URL_LENGTH} characters")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F or c == "\\" for c in url):
        raise UnsafeURL("URL contains whitespace, control characters or backslashes")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise UnsafeURL("URL is not well formed") from None
    if parsed.scheme not in ("http", "https"):
        raise UnsafeURL("URL scheme must be http or https")
    if parsed.userinfo:
        raise UnsafeURL("URL must not contain credentials")
    if not parsed.host:
        raise UnsafeURL("URL has no host")
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        raise UnsafeURL("URL port must be between 1 and 65535")


def _check_addresses(addresses: Iterable[str]) -> list[str]:
    checked: list[str] = []
    for address in addresses:
        ip = parse_ip(address.split("%", 1)[0])
        if ip is None or is_forbidden_ip(ip):
            raise UnsafeURL("host resolves to a private, loopback or reserved address")
        checked.append(address)
    if not checked:
        raise UnsafeURL("host does not resolve")
    return checked


async def _getaddrinfo(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def resolve_and_check(
    host: str, port: int, allow_private: bool, resolver: Resolver | None = None
) -> list[str]:
    """Resolve `host` and return its addresses, refusing it if ANY address is forbidden.

    One bad address is enough: the connecting side may pick any of them, and a mixed public
    and private answer is what a rebinding attack looks like.
    """
    ip = parse_ip(host)
    if ip is not None:
        if not allow_private and is_forbidden_ip(ip):
            raise UnsafeURL("host is a private, loopback or reserved address")
        return [str(ip)]
    if not allow_private and is_forbidden_hostname(host):
        raise UnsafeURL("host names the local machine or a metadata service")
    try:
        if resolver is None:
            addresses: Iterable[str] = await _getaddrinfo(host, port)
        else:
            result = resolver(host, port)
            addresses = await result if inspect.isawaitable(result) else result
    except (OSError, UnicodeError):
        raise UnsafeURL("host does not resolve") from None
    addresses = list(addresses)
    if allow_private:
        if not addresses:
            raise UnsafeURL("host does not resolve")
        return addresses
    return _check_addresses(addresses)


async def check_url(url: str, allow_private: bool, resolver: Resolver | None = None) -> None:
    """Full registration-time check: syntax, then the addresses the host resolves to."""
    check_url_syntax(url)
    parsed = httpx.URL(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    await resolve_and_check(parsed.host, port, allow_private, resolver)
