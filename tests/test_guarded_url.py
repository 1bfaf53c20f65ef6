"""A subscriber URL as the guarded client reads it (relay/delivery/guarded_url.py): the same
normalised URL, checked host and kept-alive target as httpx's parse of the whole URL, whichever
way it was read, and one parse per endpoint parent however many endpoints sit under it."""

from __future__ import annotations

import httpx
import pytest

from relay.delivery import guarded_url, http_request

SHAPES = [
    "https://hooks.example/relay/sub_0001",
    "https://hooks.example/relay/sub_0001/",
    "https://HOOKS.Example:443/relay/a-b.c~d_e",
    "http://hooks.example:8080/a/./b/../hook",
    "https://hooks.example/a//hook",
    "https://hooks.example/a%7e/hook",
    "https://hooks.example/a b/hook",
    "https://hooks.example/hook%20x",
    "https://hooks.example/hook x",
    "https://hooks.example/hooks/..",
    "https://hooks.example/hooks/.",
    "https://hooks.example/hook?x=/y",
    "https://hooks.example/hook#frag",
    "https://bücher.example/hook",
    "https://[::1]:8443/hook",
    "http://127.0.0.1:9/hook",
    "http://169.254.169.254/latest/meta-data",
    "http://localhost/hook",
    "https://hooks.example",
    "https://hooks.example/hook",
    "https://user:secret@hooks.example/hook",
    "https://user@/hook",
    "ftp://hooks.example/hook",
    "https:///hook",
    "https:/hooks.example/hook",
    "https:hooks.example/hook",
    "/relative/hook",
    "https://hooks.example/a://b/hook",
    "https://hooks.example:abc/hook",  # the parent's parse fails, as the whole URL's does
    "http://[::1/hook",
    "https://hooks.example/hook\x7f",
]


@pytest.mark.parametrize("url", SHAPES)
def test_read_as_httpx_parses_the_whole_url(url: str) -> None:
    guarded_url.read.cache_clear()
    guarded_url._whole.cache_clear()
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        with pytest.raises(httpx.InvalidURL):
            guarded_url.read(url)
        return
    got = guarded_url.read(url)
    assert (got.url, got.host) == (str(parsed), parsed.host)
    assert got.where == http_request.target(str(parsed))


def test_endpoints_under_one_parent_share_its_parse() -> None:
    """10,000 endpoints, more than the whole-URL cache holds: each is read from its parent's
    parse, so the parse cache holds one entry, and the host is the parent's."""
    guarded_url.read.cache_clear()
    guarded_url._whole.cache_clear()
    for n in range(10_000):
        got = guarded_url.read(f"https://hooks.example/relay/sub_{n:05d}")
        assert got.url == f"https://hooks.example/relay/sub_{n:05d}"
        assert got.host == "hooks.example"
        assert got.where is not None and got.where.path == f"/relay/sub_{n:05d}"
    assert guarded_url._whole.cache_info().currsize == 1
