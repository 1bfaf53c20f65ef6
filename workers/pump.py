"""Claims due work from a Redis sorted set under a lease and runs it with bounded concurrency.

The sorted set is the queue: a member's score is when it is next due. Claiming moves the score to
a lease deadline in one script, so two workers never hold the same member, and a worker killed
with the member in hand only delays it until the lease passes. Handlers reschedule or remove
their member when they finish; that is how a poll chain or a delivery lane keeps exactly one
owner at a time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from relay.store.client import bind

log = structlog.get_logger("relay.pump")

Handler = Callable[[str], Awaitable[None]]


class Pump:
    def __init__(
        self,
        name: str,
        r: aioredis.Redis,
        due_key: str,
        handler: Handler,
        *,
        concurrency: int,
        lease: float,
        idle: float = 0.02,
        batch: int = 100,
    ) -> None:
        self.name = name
        self._r = r
        self._due_key = due_key
        self._handler = handler
        self._concurrency = concurrency
        self._lease = lease
        self._idle = idle
        self._batch = batch
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        self._stopping = False
        self.last_beat = time.time()

    async def run(self) -> None:
        while not self._stopping:
            self.last_beat = time.time()
            free = self._concurrency - len(self._tasks)
            if free <= 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            try:
                now = time.time()
                members = await bind(self._r).claim(
                    keys=[self._due_key], args=[now, now + self._lease, min(free, self._batch)]
                )
            except RedisError as exc:
                log.warning("claim_failed", pump=self.name, error=type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            for member in members:
                task = asyncio.create_task(self._run_one(member))
                self._tasks.add(task)
                task.add_done_callback(self._done)
            if not members:
                await asyncio.sleep(self._idle)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slot_freed.set()

    async def _run_one(self, member: str) -> None:
        try:
            await self._handler(member)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The member keeps its lease and comes back when it expires: nothing is lost.
            log.exception("job_failed", pump=self.name, member=member, error=type(exc).__name__)

    async def drain(self, grace: float) -> None:
        """Stop claiming; give in-flight work `grace` seconds; cancel the rest (their leases
        expire and another worker picks them up)."""
        self._stopping = True
        self._slot_freed.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=2)

    @property
    def in_flight(self) -> int:
        return len(self._tasks)
