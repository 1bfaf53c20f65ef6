"""The embedded Valkey (`relay dev`, the benches) starts with its allocator settings
(relay/store/connection.py EMBEDDED_MALLOC), leaves this process's environment as it was, and
yields to a user's own GLIBC_TUNABLES."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis

from relay.store.connection import EMBEDDED_MALLOC, start_embedded


def _server_environ(server: object) -> dict[str, str]:
    pid = server._process.pid  # type: ignore[attr-defined]
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    pairs = (item.decode().partition("=") for item in raw.split(b"\0") if item)
    return {name: value for name, _, value in pairs}


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads /proc")
@pytest.mark.parametrize("own", [None, "glibc.malloc.arena_max=2"])
def test_embedded_valkey_allocator(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, own: str | None
) -> None:
    if own is None:
        monkeypatch.delenv("GLIBC_TUNABLES", raising=False)
    else:
        monkeypatch.setenv("GLIBC_TUNABLES", own)
    server = start_embedded(tmp_path / "valkey", persist=False)
    try:
        # glibc rewrites the variable in the process's own memory as it parses it (what
        # /proc shows may keep only part of it): what is there must be what was passed.
        seen = _server_environ(server)["GLIBC_TUNABLES"].split(":")
        assert seen != [""] and set(seen) <= set((own or EMBEDDED_MALLOC).split(":"))
        assert os.environ.get("GLIBC_TUNABLES") == own
        client = redis.Redis.from_url(server.connection_url)
        try:
            assert client.set("k", "v") and client.get("k") == b"v"
        finally:
            client.close()
    finally:
        server.stop()
