"""Coalesce the Redis commands that concurrent jobs send in one event-loop turn into one pipeline.

A worker runs dozens of deliveries at once, and each used to take its own connection from the
pool for every round trip. Most of a delivery's Redis cost was that per-round-trip overhead
(pool checkout, health check, one write and one read per call), not the commands themselves. Here
every job still awaits its own commands, but the commands queued during one turn of the loop go
out together on one connection, in the order they were queued, and each job gets back exactly its
own results. A job's commands stay contiguous and in order, so a job that queues "log the
attempt, then pop the head" keeps that order; there is no MULTI, so no atomicity across jobs is
implied or needed (each script is atomic on its own).
"""

from __future__ import annotations

import asyncio
import inspect
from typing import Any

import redis.asyncio as aioredis
from hiredis import pack_command
from redis._parsers.hiredis import NOT_ENOUGH_DATA
from redis.asyncio.connection import AbstractConnection
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from relay.store.connection import buffered_reader, carried_error

#: An own connection unused this long (seconds) is checked before its next round trip.
IDLE_CHECK = 1.0
#: The most own connections a pipeline makes: a round trip starts while earlier ones are still
#: out (a claim, the polls' slots, the records, each its own batch), and one that finds every own
#: connection busy takes a pooled one. With one, a busy worker's overlapping round trips went
#: through the pool's checkout (py-spy showed its health check and release); with four, a
#: delivery took 136-139 us of CPU against 144 (bench/delivery.py), and eight did no better.
OWN_CONNECTIONS = 4

Command = tuple[Any, ...]
Queued = tuple[tuple[Command, ...], "asyncio.Future[list[Any]]"]


class AutoPipeline:
    """`own_connection`: keep connections of this pipeline's own (made on first need, closed by
    `aclose`) for its round trips, instead of taking one from the client's pool for each: the
    pool's checkout polls the socket for stray data under a zero timeout, which costs a loop
    turn and a raised and caught timeout per round trip (~20 µs of CPU each, bench/delivery.py).
    A connection only this pipeline uses, dropped after any failed exchange, cannot hold a stray
    reply. For long-lived pipelines (a worker's, the api's) that close it. Up to
    OWN_CONNECTIONS are made, as round trips overlap; one that finds them all busy takes a
    pooled one as before."""

    def __init__(
        self, r: aioredis.Redis, *, max_commands: int = 1024, own_connection: bool = False
    ) -> None:
        self._r = r
        self._max = max_commands
        self._queue: list[Queued] = []
        self._queued = 0
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()
        self._own = own_connection
        #: Every own connection made (closed by `aclose`), and those not in a round trip now,
        #: each with when it was last used (the most recent last: it is taken first, so spare
        #: ones idle, and are checked before they carry a round trip again).
        self._made: list[AbstractConnection] = []
        self._idle: list[tuple[AbstractConnection, float]] = []

    async def aclose(self) -> None:
        """Close the pipeline's own connections, if it made any."""
        made, self._made, self._idle = self._made, [], []
        for conn in made:
            await conn.disconnect()

    @property
    def redis(self) -> aioredis.Redis:
        return self._r

    async def execute(self, *commands: Command, raise_on_error: bool = True) -> list[Any]:
        """Send `commands` with whatever else is queued this turn; one result per command.
        As in redis-py's pipelines, a failed command raises, or with `raise_on_error=False`
        gives its exception in place; a failure of the whole round trip always raises."""
        results = await self._enqueue(commands)
        if raise_on_error:
            for result in results:
                if isinstance(result, Exception):
                    raise result
        return results

    def submit(self, *commands: Command) -> asyncio.Future[list[Any]]:
        """Queue `commands` now and return the future of their results (each failed command's
        exception in its place) without waiting: a job that will need a read later sends it in
        the same round trip as the command it awaits next. A future nobody awaits (the job ended
        first) is let go quietly."""
        future = self._enqueue(commands)
        future.add_done_callback(_retrieved)
        return future

    def _enqueue(self, commands: tuple[Command, ...]) -> asyncio.Future[list[Any]]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._queue.append((commands, future))
        self._queued += len(commands)
        if self._queued >= self._max:
            self._flush()
        elif not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self._scheduled = False
        if not self._queue:
            return
        batch, self._queue, self._queued = self._queue, [], 0
        task = asyncio.create_task(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, batch: list[Queued]) -> None:
        sent = [command for commands, _ in batch for command in commands]
        try:
            results = await self._exchange(sent)
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        at = 0
        for commands, future in batch:
            if not future.done():
                future.set_result(results[at : at + len(commands)])
            at += len(commands)

    async def _exchange(self, commands: list[Command]) -> list[Any]:
        """One write of every command, then their replies in order, with the client's own reply
        parsing (hiredis) and response callbacks, on the pipeline's own connection when it has
        one free, else on one of the client's pool.

        Not a redis-py `Pipeline`: its per-command bookkeeping, and the timer its connection
        arms around every single reply it reads (`socket_timeout`), cost more CPU than the
        round trip itself (bench/delivery.py: ~9 µs a command against ~2 here). The client's
        timeout still bounds the exchange, once for the whole of it; a connection whose
        exchange failed or was cut off is dropped, never reused mid-reply. A failed command
        gives its error in its place (a `ResponseError`), as a pipeline's do."""
        pool = self._r.connection_pool
        own = await self._own_connection() if self._own else None
        if own is not None:
            try:
                budget = pool.connection_kwargs.get("socket_timeout")
                return await self._talk(own, commands, budget)
            finally:
                if own in self._made:  # (not closed by `aclose` meanwhile)
                    self._idle.append((own, asyncio.get_running_loop().time()))
        conn = await pool.get_connection()
        timeout = conn.socket_timeout
        conn.socket_timeout = None
        try:
            return await self._talk(conn, commands, timeout)
        finally:
            conn.socket_timeout = timeout
            await pool.release(conn)

    async def _own_connection(self) -> AbstractConnection | None:
        """A free own connection, made on first need up to OWN_CONNECTIONS (None: all busy).
        One unused for IDLE_CHECK or more is checked as the pool checks its own (a connection
        the server or a proxy closed while idle is made again, not found dead by the round trip
        it carries). In use back to back it is not: nothing else reads it, and a failed
        exchange drops it."""
        if not self._idle:
            if len(self._made) >= OWN_CONNECTIONS:
                return None
            made: AbstractConnection = self._r.connection_pool.make_connection()  # type: ignore[no-untyped-call]
            made.socket_timeout = None  # bounded per exchange instead (_talk)
            self._made.append(made)
            return made
        conn, last_used = self._idle.pop()
        if conn.is_connected and asyncio.get_running_loop().time() - last_used > IDLE_CHECK:
            try:
                stray = await conn.can_read_destructive()  # type: ignore[no-untyped-call]
            except (RedisConnectionError, OSError):
                stray = True
            if stray:
                await conn.disconnect()
        return conn

    async def _talk(
        self, conn: AbstractConnection, commands: list[Command], budget: float | None
    ) -> list[Any]:
        """The exchange itself. With hiredis (connection.py `_c_packing`), every command is
        packed by hiredis's C packer in one list and a reply already whole in the parser's
        buffer (in a batch, all but the first, mostly) is taken straight from its reader, not
        through redis-py's per-command packing and `read_response` coroutine: a worker's
        round trips carry a few commands a poll or a delivery, and that per-command Python was
        ~a quarter of their CPU (the issue 27 note has the figures). The bytes sent and the
        replies handed back are the same either way."""
        callbacks = self._r.response_callbacks
        results: list[Any] = []
        try:
            async with asyncio.timeout(budget):
                await conn.send_packed_command(_pack(conn, commands))
                reader = buffered_reader(conn)  # (made by the connect a send may do)
                for command in commands:
                    reply = reader.gets() if reader is not None else NOT_ENOUGH_DATA
                    try:
                        if reply is NOT_ENOUGH_DATA:
                            reply = await conn.read_response()
                        elif (error := carried_error(reply)) is not None:
                            raise error
                    except ResponseError as exc:
                        results.append(exc)
                        continue
                    callback = callbacks.get(command[0])
                    if callback is not None:
                        reply = callback(reply)
                        if inspect.isawaitable(reply):
                            reply = await reply
                    results.append(reply)
                if reader is not None and conn.health_check_interval:
                    # as redis-py's `read_response` moves it on every reply it reads
                    conn.next_health_check = (
                        asyncio.get_running_loop().time() + conn.health_check_interval
                    )
        except TimeoutError:
            await conn.disconnect(nowait=True)
            raise RedisTimeoutError(f"Redis did not answer within {budget}s") from None
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        return results


def _pack(conn: AbstractConnection, commands: list[Command]) -> Any:
    """The commands as redis-py's C-packing connection packs them (a name with a space split
    in two words, a value it refuses refused as DataError), in one buffer."""
    if not getattr(conn, "packs_in_c", False) or any(" " in command[0] for command in commands):
        return conn.pack_commands(commands)
    try:
        return b"".join([pack_command(command) for command in commands])
    except TypeError as exc:
        raise DataError(str(exc)) from None


def _retrieved(future: asyncio.Future[list[Any]]) -> None:
    """Mark a failed round trip's error as seen on a submitted future: it is raised to the job
    that awaits it, and one that never does leaves no "exception was never retrieved" behind."""
    if not future.cancelled():
        future.exception()


def evalsha(script: AsyncScript, keys: list[str], args: list[Any]) -> Command:
    """A script call as a queued command (the script is registered once per process)."""
    return ("EVALSHA", script.sha, len(keys), *keys, *args)


async def run_script(
    pipe: AutoPipeline, script: AsyncScript, keys: list[str], args: list[Any]
) -> Any:
    """One script through the auto-pipeline; loads it first if the server has lost it."""
    (result,) = await pipe.execute(evalsha(script, keys, args), raise_on_error=False)
    return await checked(result, script, keys, args)


async def checked(result: Any, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
    """A queued script's result, re-run through the script object (which loads it) when the
    server's script cache was flushed; any other error is raised."""
    if isinstance(result, NoScriptError):
        return await script(keys=keys, args=args)
    if isinstance(result, Exception):
        raise result
    return result
