"""Claims due work from a Redis sorted set under a lease and runs it with bounded concurrency.

The sorted set is the queue: a member's score is when it is next due. Claiming moves the score to
a lease deadline in one script, so two workers never hold the same member, and a worker killed
with the member in hand only delays it until the lease passes. Handlers reschedule or remove
their member when they finish; that is how a poll chain or a delivery lane keeps exactly one
owner at a time. The lease's deadline and token come from Redis (relay/store/leases.py), so a
worker's clock plays no part, and a worker whose lease passed cannot finish, retry or reschedule a
member another worker holds now. A member whose job raises `poison_after` times in a row is set
aside (lua/fail.lua) instead of coming back every lease forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from relay import metrics
from relay.store import leases, scripts
from relay.store.autopipe import AutoPipeline
from relay.store.leases import Lease

log = structlog.get_logger("relay.pump")

Handler = Callable[[Lease], Awaitable[None]]
#: The longest the loop waits for a free slot before it turns again (and beats).
TURN = 1.0
#: An idle worker costs Redis about two commands per pump per NAP seconds (a claim and a BLPOP),
#: whatever the fleet's size (relay/store/scripts.py).
NAP = scripts.NAP


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
        poison_after: int = 5,
        keep: float = 30 * 86400.0,
        run_key: Callable[[str], str] = lambda member: "",
        on_set_aside: Callable[[Lease, str], Awaitable[None]] | None = None,
        runs: bool = False,
        pipe: AutoPipeline | None = None,
        gather: float = 0.0,
        prepare: Callable[[list[Lease]], Awaitable[list[Lease]]] | None = None,
    ) -> None:
        self.name = name
        self._r = r
        self._due_key = due_key
        self._handler = handler
        self._concurrency = concurrency
        self._lease = lease
        self._idle = idle
        self._batch = batch
        self._poison_after = poison_after
        self._keep = keep
        self._run_key = run_key
        self._on_set_aside = on_set_aside
        #: Members are run ids: the claim reads each one's run hash for its job (`Lease.run`).
        self._runs = runs
        #: Claims through the worker's auto-pipeline, with the jobs' commands of the same turn.
        self._pipe = pipe
        #: After a claim that took fewer than it could, wait this long before the next, so the
        #: members falling due meanwhile are claimed (and their jobs run) together.
        self._gather = gather
        #: Between a claim and its jobs: work for all the claimed members at once (the poll
        #: and start pumps' send slots, workers/ahead.py), each lease handed back with it. A
        #: prepare that fails leaves the leases as claimed: each job does its own part.
        self._prepare = prepare
        self._tasks: set[asyncio.Task[None]] = set()
        self._slot_freed = asyncio.Event()
        self._stopping = False
        self.last_beat = time.time()

    async def run(self) -> None:
        while not self._stopping:
            # `relay check` reads this (through the heartbeat): a loop that stops turning is hung.
            self.last_beat = time.monotonic()
            free = self._concurrency - len(self._tasks)
            if free <= 0:
                self._slot_freed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._slot_freed.wait(), TURN)
                continue
            try:
                members, following, now = await leases.claim_or_next(
                    self._r,
                    self._due_key,
                    self._lease,
                    min(free, self._batch),
                    self._runs,
                    self._pipe,
                )
                if not members:
                    await self._nap(following, now)
                    continue
            except RedisError as exc:
                log.warning("claim_failed", pump=self.name, error=type(exc).__name__)
                await asyncio.sleep(1.0)
                continue
            if self._prepare is not None:
                try:
                    members = await self._prepare(members)
                except Exception as exc:
                    # Each job does its own part then, and meets the error as its own (counted
                    # towards its member's poison limit), not every member of the claim at once.
                    log.warning("prepare_failed", pump=self.name, error=type(exc).__name__)
            for member in members:
                task = asyncio.create_task(self._run_one(member))
                self._tasks.add(task)
                task.add_done_callback(self._done)
            if self._gather and len(members) < min(free, self._batch):
                await asyncio.sleep(self._gather)

    async def _nap(self, following: float | None, now: float) -> None:
        """Nothing is due: sleep until the next member is (server time), at most NAP, unless a
        script nudges this due set first (work made due now). A wait shorter than `idle` is
        slept without asking Redis."""
        wait = NAP if following is None else min(NAP, max(0.0, following - now))
        if wait <= self._idle:
            await asyncio.sleep(wait)
            return
        await leases.nap(self._r, self._due_key, wait)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slot_freed.set()

    async def _run_one(self, lease: Lease) -> None:
        try:
            await self._handler(lease)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The member keeps its lease and comes back when it expires: nothing is lost. After
            # `poison_after` failures in a row it is set aside, its error on the run.
            log.exception(
                "job_failed", pump=self.name, member=lease.member, error=type(exc).__name__
            )
            error = f"{type(exc).__name__}: {exc}"[:500]
            try:
                fails = await leases.fail(
                    self._r,
                    lease,
                    limit=self._poison_after,
                    error=json.dumps(
                        {
                            "error": "job_failed",
                            "job": self.name,
                            "message": error,
                            "at": time.time(),
                        }
                    ),
                    run_key=self._run_key(lease.member),
                    keep=self._keep,
                )
            except RedisError:
                return
            if fails >= self._poison_after:
                metrics.POISONED.labels(self.name).inc()
                log.error("job_set_aside", pump=self.name, member=lease.member, failures=fails)
                if self._on_set_aside is not None:
                    with contextlib.suppress(RedisError):
                        await self._on_set_aside(lease, error)

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
