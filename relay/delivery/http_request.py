"""A request as the kept-alive path (relay/delivery/http11.py) writes it: where a URL's request
goes, and its head, byte for byte as aiohttp would send it. None from `target` or
`request_head` means aiohttp must send it (credentials in the URL, another scheme or method, a
header with a line break): the lean path never sends anything aiohttp would not."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import yarl

from relay.delivery.ssrf import parse_ip

#: The methods sent here; another goes to aiohttp. Those without a body get no Content-Length,
#: as aiohttp sends them.
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
_BODILESS = frozenset({"GET"})
#: Header names this module writes itself.
_OWN = frozenset({"host", "content-length", "transfer-encoding"})
_TOKEN_EXTRA = frozenset("!#$%&'*+-.^_`|~")

Key = tuple[str, str, int]


@dataclass(frozen=True, slots=True)
class Target:
    """Where a URL's request goes: the pool's key, what to connect to, and the request line's
    target and Host header as aiohttp sends them (yarl's encoding of the URL)."""

    key: Key
    host: str  # a name to resolve or, for an IP literal, the address (no brackets)
    port: int
    tls: bool
    literal: bool
    path: str
    authority: str


#: RFC 3986's unreserved characters: a path segment made of them only is left as it is by yarl's
#: parse and by httpx's.
UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def split_last(url: str) -> tuple[str, str] | None:
    """`url` as its parent (with its slash) and a last path segment that can be appended to the
    parent's parse as it is; None when the whole URL must be parsed. A URL's own one (a run's
    `.../runs/<id>`, an endpoint's `.../hooks/<id>`) then costs no parse of its own: the parent
    is parsed once for all its children. Only a segment of unreserved characters, not a dot
    segment, in a URL with no query or fragment, whose authority lies whole in the parent
    (`scheme://host...`, so the host read from the parent is the URL's)."""
    parent, slash, last = url.rpartition("/")
    _scheme, sep, authority = parent.partition("://")
    if (
        slash
        and sep
        and authority
        and last not in ("", ".", "..")
        and "?" not in url
        and "#" not in url
        and UNRESERVED.issuperset(last)
    ):
        return parent + "/", last
    return None


def target(url: str) -> Target | None:
    """Where `url`'s request goes; None when aiohttp must send it.

    Cached by the URL's parent (`split_last`): a poll's URL is its run's own, so a cache of
    whole URLs missed on every poll past a few thousand runs and paid yarl's parse (~9 µs) each
    time, while a vendor has one parent for all its runs. Any other URL is parsed whole, and
    cached whole."""
    split = split_last(url)
    if split is not None:
        parent, last = split
        base = _parse(parent)
        if base is not None and base.path.endswith("/"):
            return Target(
                base.key,
                base.host,
                base.port,
                base.tls,
                base.literal,
                base.path + last,
                base.authority,
            )
    return _parse(url)


@lru_cache(maxsize=4096)
def _parse(url: str) -> Target | None:
    """`target` by yarl's parse of the whole URL."""
    try:
        parsed = yarl.URL(url)
        host, port = parsed.raw_host, parsed.port
        path = parsed.raw_path_qs or "/"
        authority = parsed.host_port_subcomponent or ""
    except (TypeError, ValueError):
        return None
    if (
        parsed.scheme not in ("http", "https")
        or not host
        or port is None
        or parsed.raw_user is not None
        or not (_plain(path) and _plain(authority))
    ):
        return None
    return Target(
        key=(parsed.scheme, host, port),
        host=host,
        port=port,
        tls=parsed.scheme == "https",
        literal=parse_ip(host.split("%", 1)[0]) is not None,
        path=path,
        authority=authority,
    )


def _plain(text: str) -> bool:
    return bool(text) and text.isascii() and text.isprintable() and " " not in text


@lru_cache(maxsize=256)
def _is_token(name: str) -> bool:
    """A header name as RFC 9110 allows one, and not one this module writes itself."""
    return (
        bool(name)
        and name.isascii()
        and all(c.isalnum() or c in _TOKEN_EXTRA for c in name)
        and name.lower() not in _OWN
    )


def request_head(
    method: str, where: Target, headers: Mapping[str, str], length: int
) -> bytes | None:
    """The request line and headers, or None when a header cannot go as it is (aiohttp then
    refuses or sends it as it always has). A body without a content type is sent as
    application/octet-stream, and every method but GET carries its length, as with aiohttp."""
    if method not in METHODS:
        return None
    parts = [method, " ", where.path, " HTTP/1.1\r\nHost: ", where.authority, "\r\n"]
    typed = False
    for name, value in headers.items():
        if "\r" in value or "\n" in value or not _is_token(name):
            return None
        parts += (name, ": ", value, "\r\n")
        if len(name) == 12 and name.lower() == "content-type":
            typed = True
    if length and not typed:
        parts.append("Content-Type: application/octet-stream\r\n")
    if length or method not in _BODILESS:
        parts += ("Content-Length: ", str(length), "\r\n")
    parts.append("\r\n")
    return "".join(parts).encode()
