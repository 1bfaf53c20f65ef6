"""Pull instead of push: a tenant's events in recording order, from its stream of event ids.

RECORD_EVENT appends every new event's id to the tenant's stream (`keys.tenant_events`) and
publishes the stream's key on `keys.EVENTS_WAKE`. A pulled item is the stored webhook body with
its `id` spliced in front, so it is byte for byte what a subscriber receives (plus `id`).

Long-polls hold no Redis connection while they wait: each api process keeps ONE pub/sub
subscription (`Waiter`), and a waiting request only parks an asyncio future that the listener
resolves when its tenant's stream key is published. Reads go through one auto-pipeline that
sends one batch at a time, so a hundred requests waking together share a round trip or two and
one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import time
from dataclasses import dataclass, field

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from relay.store import keys
from relay.store.autopipe import AutoPipeline, Queued
from relay.store.packing import unpack

log = structlog.get_logger("relay.delivery.pull")

MAX_WAIT = 30.0
MAX_LIMIT = 200
DEFAULT_LIMIT = 50
# Empty (or absent): from the oldest kept event.
CURSOR_PATTERN = "^([0-9]{1,15}-[0-9]{1,19})?$"
CURSOR = re.compile(CURSOR_PATTERN)
LIMIT = re.compile(r"^[0-9]{1,3}$")
SECONDS = re.compile(r"^[0-9]{1,20}(\.[0-9]{0,20})?([eE][-+]?[0-9]{1,3})?$")
START = "0-0"


class BadQuery(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Query:
    after: str
    limit: int
    wait: float


def parse_query(after: str | None, limit: str | None, wait: str | None) -> Query:
    """`after`: a `next_cursor` (absent: from the oldest kept event); `limit` 1-200; `wait`
    seconds 0-30 (decimals allowed). Anything else is a `BadQuery` naming the field."""
    if after in (None, ""):
        after = START
    elif not CURSOR.match(after):
        raise BadQuery("after", "not a cursor this API gave (use next_cursor)")
    # ASCII digits only: int() and float() would also take "+5", " 5", "1_0" or other scripts.
    # Absent: the default. Present but empty is bad input, as for every other integer parameter.
    if limit is None:
        n = DEFAULT_LIMIT
    elif LIMIT.match(limit):
        n = int(limit)
    else:
        raise BadQuery("limit", "must be an integer")
    if not 1 <= n <= MAX_LIMIT:
        raise BadQuery("limit", f"must be 1-{MAX_LIMIT}")
    if wait is None:
        seconds = 0.0
    elif SECONDS.match(wait):
        seconds = float(wait)
    else:
        raise BadQuery("wait", "must be a number of seconds")
    if not (math.isfinite(seconds) and 0 <= seconds <= MAX_WAIT):
        raise BadQuery("wait", f"must be 0-{MAX_WAIT:g} seconds")
    return Query(after, n, seconds)


def _following(cursor: str) -> str:
    """The smallest stream id after `cursor` (XRANGE's start is inclusive; this works on any
    Redis, where the `(` exclusive form needs 6.2)."""
    ms, _, seq = cursor.partition("-")
    return f"{ms}-{int(seq) + 1}"


async def read(pipe: AutoPipeline, tenant: str, after: str, limit: int) -> tuple[list[str], str]:
    """Up to `limit` pulled items (JSON text) after `after`, and the cursor to continue from.
    An event whose body is gone (its run was erased or aged out) is skipped, not returned empty."""
    (entries,) = await pipe.execute(
        ("XRANGE", keys.tenant_events(tenant), _following(after), "+", "COUNT", limit)
    )
    if not entries:
        return [], after
    ids = [fields.get("e", "") for _, fields in entries]
    stored = await pipe.execute(*[("HGET", keys.event(evt), "body") for evt in ids])
    # Bodies are stored compressed where that pays (relay/store/packing.py).
    bodies = [unpack(body) if body else body for body in stored]
    items = [
        '{"id":' + json.dumps(evt) + "," + body[1:]
        for evt, body in zip(ids, bodies, strict=True)
        if body and body.startswith("{")
    ]
    return items, entries[-1][0]


class OneBatchAtATime(AutoPipeline):
    """The pulls' auto-pipeline sends one batch at a time (what queues meanwhile goes in the
    next), so however many requests read at once they use one connection, not one per batch in
    flight."""

    def __init__(self, r: aioredis.Redis) -> None:
        super().__init__(r)
        self._turn = asyncio.Lock()

    async def _send(self, batch: list[Queued]) -> None:
        async with self._turn:
            await super()._send(batch)


def page(items: list[str], cursor: str) -> str:
    return '{"data":[' + ",".join(items) + '],"next_cursor":' + json.dumps(cursor) + "}"


@dataclass
class Waiter:
    """One pub/sub subscription per api process, waking the long-polls of the tenant whose
    stream key was published. Started on the first long-poll, stopped with the app."""

    redis: aioredis.Redis
    waiting: dict[str, set[asyncio.Future[None]]] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None

    def park(self, stream: str) -> asyncio.Future[None]:
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._listen())
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(stream, set()).add(future)
        return future

    def unpark(self, stream: str, future: asyncio.Future[None]) -> None:
        parked = self.waiting.get(stream)
        if parked is not None:
            parked.discard(future)
            if not parked:
                del self.waiting[stream]

    def _wake(self, stream: str | None = None) -> None:
        for key in [stream] if stream is not None else list(self.waiting):
            for future in self.waiting.pop(key or "", set()):
                if not future.done():
                    future.set_result(None)

    async def _listen(self) -> None:
        while True:
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(keys.EVENTS_WAKE)
                # Anything published before (or while re-) subscribing was missed: everyone
                # re-reads once.
                self._wake()
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message and message.get("type") == "message":
                        self._wake(str(message["data"]))
            except (RedisError, OSError) as exc:
                log.warning("pull_listener_lost", error=type(exc).__name__)
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def aclose(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        self._wake()


async def pull(
    pipe: AutoPipeline, waiter: Waiter, tenant: str, query: Query
) -> tuple[list[str], str]:
    """Read; when nothing is newer and the caller may wait, park until the tenant's stream is
    published (or the wait runs out) and read again. The future is parked BEFORE each read, so
    an event recorded between the read and the wait still wakes it."""
    deadline = time.monotonic() + query.wait
    stream = keys.tenant_events(tenant)
    after = query.after
    while True:
        future = waiter.park(stream) if query.wait else None
        try:
            items, cursor = await read(pipe, tenant, after, query.limit)
            if items:
                return items, cursor
            if cursor != after:
                after = cursor  # only events whose bodies are gone: read on past them
                continue
            left = deadline - time.monotonic()
            if future is None or left <= 0:
                return items, cursor
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, left)
        finally:
            if future is not None:
                waiter.unpark(stream, future)
