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
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

Command = tuple[Any, ...]
Queued = tuple[tuple[Command, ...], "asyncio.Future[list[Any]]"]


class AutoPipeline:
    def __init__(self, r: aioredis.Redis, *, max_commands: int = 1024) -> None:
        self._r = r
        self._max = max_commands
        self._queue: list[Queued] = []
        self._queued = 0
        self._scheduled = False
        self._sending: set[asyncio.Task[None]] = set()

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
        pipe = self._r.pipeline(transaction=False)
        for commands, _ in batch:
            for command in commands:
                pipe.execute_command(*command)
        try:
            results = await pipe.execute(raise_on_error=False)
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
