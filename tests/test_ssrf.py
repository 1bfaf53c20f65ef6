"""The SSRF guard. Every name lookup here goes through an injected resolver: no real DNS query
for an internet name is ever made by these tests."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import pytest

from relay.delivery.ssrf import (
    UnsafeURL,
    check_url,
    check_url_syntax,
    is_forbidden_hostname,
    is_forbidden_ip,
    resolve_and_check,
)

FAKE_DNS: dict[str, list[str]] = {
    "public.example": ["93.184.216.34"],
    "public6.example": ["2606:2800:220:1:248:1893:25c8:1946"],
    "internal.example": ["10.1.2.3"],
    "mixed.example": ["93.184.216.34", "192.168.7.7"],
    "mapped.example": ["::ffff:169.254.169.254"],
    "nothing.example": [],
    # What these resolve to where they mean something; only reached when private is allowed.
    "localhost": ["127.0.0.1", "::1"],
    "localhost.": ["127.0.0.1"],
    "api.localhost": ["127.0.0.1"],
    "metadata.google.internal": ["169.254.169.254"],
    "metadata": ["169.254.169.254"],
}


async def fake_resolver(host: str, port: int) -> list[str]:
    if host not in FAKE_DNS:
        raise OSError(f"unexpected lookup of {host}")
    return FAKE_DNS[host]


def sync_resolver(host: str, port: int) -> Iterable[str]:
    return FAKE_DNS[host]


REFUSED_URLS = [
    "http://127.0.0.1/hook",
    "http://127.0.0.1:8080/hook",
    "http://10.0.0.1/",
    "http://172.16.5.4/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.100.100.200/",
    "http://100.64.0.1/",
    "http://[::1]/",
    "http://[::ffff:127.0.0.1]/",
    "http://[::ffff:10.0.0.1]/",
    "http://[::ffff:a9fe:a9fe]/",
    "http://[fd00::1]/",
    "http://[fd00:ec2::254]/",
    "http://[fe80::1]/",
    "http://[64:ff9b::a00:1]/",
    "http://[2002:7f00:1::]/",
    "http://[::7f00:1]/",
    "http://0.0.0.0/",
    "http://localhost/",
    "http://localhost:3000/x",
    "http://LocalHost./",
    "http://api.localhost/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://metadata/",
    "http://internal.example/",
    "http://mixed.example/",
    "http://mapped.example/",
    "http://nothing.example/",
]


@pytest.mark.parametrize("url", REFUSED_URLS)
async def test_refused(url: str) -> None:
    with pytest.raises(UnsafeURL):
        await check_url(url, allow_private=False, resolver=fake_resolver)


@pytest.mark.parametrize("url", [u for u in REFUSED_URLS if "nothing" not in u])
async def test_everything_allowed_when_private_allowed(url: str) -> None:
    await check_url(url, allow_private=True, resolver=fake_resolver)


@pytest.mark.parametrize(
    "url",
    [
        "https://public.example/hooks/relay?x=1",
        "http://public.example:8443/",
        "https://public6.example/",
        "https://93.184.216.34/",
        "https://[2606:2800:220:1:248:1893:25c8:1946]/",
        "http://[::ffff:93.184.216.34]/",
    ],
)
async def test_allowed(url: str) -> None:
    await check_url(url, allow_private=False, resolver=fake_resolver)


async def test_resolve_and_check_returns_addresses() -> None:
    assert await resolve_and_check("public.example", 443, False, fake_resolver) == ["93.184.216.34"]
    assert await resolve_and_check("public.example", 443, False, sync_resolver) == ["93.184.216.34"]
    assert await resolve_and_check("93.184.216.34", 443, False) == ["93.184.216.34"]


async def test_mixed_answer_refused_even_with_public_first() -> None:
    with pytest.raises(UnsafeURL, match="private"):
        await resolve_and_check("mixed.example", 443, False, fake_resolver)


async def test_default_resolver_handles_local_literals_and_names() -> None:
    # Resolving "localhost" hits /etc/hosts, never the network.
    with pytest.raises(UnsafeURL):
        await resolve_and_check("localhost", 80, False)
    assert await resolve_and_check("localhost", 80, True)
    with pytest.raises(UnsafeURL):
        await resolve_and_check("::1", 80, False)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://public.example/", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("gopher://public.example/", "scheme"),
        ("http:///nohost", "host"),
        ("http://", "host"),
        ("https://user:hunter2@public.example/", "credentials"),
        ("https://token@public.example/", "credentials"),
        ("https://public.example:0/", "port"),
        ("https://public.example:70000/", "port"),
        ("https://public.example/" + "a" * 2100, "2048"),
        ("https://public.example/a b", "whitespace"),
        ("https://public.example\\@10.0.0.1/", "backslash"),
        ("not-a-url", "scheme|host|formed"),
        ("http://[::1/", "formed"),
    ],
)
def test_syntax_refused(url: str, reason: str) -> None:
    with pytest.raises(UnsafeURL, match=reason) as info:
        check_url_syntax(url)
    assert "hunter2" not in str(info.value)
    assert "token" not in str(info.value)


def test_syntax_accepts_plain_urls() -> None:
    check_url_syntax("https://public.example/hook")
    check_url_syntax("http://public.example:65535/a/b?c=d#e")


@pytest.mark.parametrize(
    "ip",
    [
        "127.0.0.1",
        "127.255.255.254",
        "10.255.0.1",
        "172.31.255.255",
        "192.168.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "100.100.100.200",
        "0.0.0.0",
        "0.1.2.3",
        "192.0.0.8",
        "192.0.2.1",
        "198.18.0.1",
        "198.51.100.7",
        "203.0.113.9",
        "224.0.0.251",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:192.168.1.1",
        "::127.0.0.1",
        "::8.8.8.8",
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::1",
        "2002:a00:1::1",
        "2002:c0a8:101::1",
        "2001::1",
        "2001:db8::1",
        "3fff::1",
        "fc00::1",
        "fd00::1",
        "fd00:ec2::254",
        "fe80::1",
        "fec0::1",
        "ff02::1",
        "100::1",
        "4000::1",
    ],
)
def test_forbidden_ips(ip: str) -> None:
    assert is_forbidden_ip(ipaddress.ip_address(ip))


@pytest.mark.parametrize(
    "ip",
    [
        "93.184.216.34",
        "8.8.8.8",
        "1.1.1.1",
        "172.32.0.1",
        "100.128.0.1",
        "192.169.0.1",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
        "2606:4700:4700::1111",
        "2a00:1450:4001:81b::200e",
    ],
)
def test_public_ips(ip: str) -> None:
    assert not is_forbidden_ip(ipaddress.ip_address(ip))


def test_forbidden_hostnames() -> None:
    for name in (
        "localhost",
        "LOCALHOST.",
        "foo.localhost",
        "metadata",
        "metadata.google.internal",
    ):
        assert is_forbidden_hostname(name)
    for name in ("example.com", "localhost.example.com", "mylocalhost"):
        assert not is_forbidden_hostname(name)
