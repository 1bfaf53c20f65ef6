"""A subscriber URL as the guarded client reads it: httpx's normalised form (what is sent), the
host httpx reads from it (what the SSRF guard checks before any lookup), and where its request
goes on the kept-alive way (relay/delivery/http_request.py).

Cached, and by the URL's parent as well as whole: a worker sends to the same URLs over and over,
but one with more subscriber URLs than the cache holds would otherwise parse every delivery's
URL again (httpx's parse is 11 µs, its literal check more), so a delivery would cost more as
subscriptions grow. An endpoint's last segment (`/hooks/<id>`) is appended to its parent's
parse where `http_request.split_last` allows it (the parent then holds the whole authority, so
the host is the same); anything else is parsed whole."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import httpx

from relay.delivery import http_request


@dataclass(frozen=True, slots=True)
class Guarded:
    url: str  # str(httpx.URL(url)): what the request is sent to
    host: str  # httpx.URL(url).host: what the guard checks
    where: http_request.Target | None  # the kept-alive way, None when aiohttp sends it


@lru_cache(maxsize=4096)
def read(url: str) -> Guarded:
    split = http_request.split_last(url)
    if split is not None:
        parent, last = split
        try:
            base = _whole(parent)
        except httpx.InvalidURL:
            return _whole(url)
        if base.host and base.url.endswith("/"):
            normal = base.url + last
            return Guarded(normal, base.host, http_request.target(normal))
    return _whole(url)


@lru_cache(maxsize=1024)
def _whole(url: str) -> Guarded:
    parsed = httpx.URL(url)
    normal = str(parsed)
    return Guarded(normal, parsed.host, http_request.target(normal))
