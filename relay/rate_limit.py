"""A subscription's `rate_limit`: at most n deliveries per second to it, across every worker.

A GCRA in Redis, like the vendor budget (relay/budget.py), but on Redis's clock (TIME) so
workers on different machines agree: each send reserves the next free slot, slots 1/n apart, so
no one-second window holds more than n + 1 sends (n when the window starts at a slot). A lane
whose slot is further off than MAX_WAIT does not wait in its worker: it is put back on the
delivery schedule for when the slot comes (no attempt counted, no delivery slot held), so a
slow-rated subscriber delays nobody else.
"""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from relay import keys
from relay.store.autopipe import AutoPipeline, run_script

MAX_WAIT = 0.05
FIELD = "rate_limit"
MAX_RATE = 1000.0

# KEYS: the subscription's slot key. ARGV: interval (s), max_wait (s).
# Returns seconds as a string: >= 0 reserved (send after that long), < 0 not reserved (come
# back after -value). The key's end: it expires a second after the slot it holds has passed.
RESERVE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local free = tonumber(redis.call('GET', KEYS[1]) or '0')
local slot = math.max(free, now)
local wait = slot - now
if wait > tonumber(ARGV[2]) then return tostring(-wait) end
local nxt = slot + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.6f', nxt), 'PX', math.ceil((nxt - now) * 1000) + 1000)
return tostring(wait)
"""


def key(sub_id: str) -> str:
    return keys.subscription(sub_id) + ":rate"


def _script(r: aioredis.Redis) -> AsyncScript:
    script: AsyncScript | None = getattr(r, "_relay_rate_script", None)
    if script is None:
        script = r.register_script(RESERVE)
        r._relay_rate_script = script  # type: ignore[attr-defined]
    return script


async def reserve(pipe: AutoPipeline, sub_id: str, rate: float) -> float:
    """0 when the caller may send now (after a wait of at most MAX_WAIT, slept here); otherwise
    the seconds until its slot, and nothing was reserved."""
    wait = float(await run_script(pipe, _script(pipe.redis), [key(sub_id)], [1.0 / rate, MAX_WAIT]))
    if wait < 0:
        return -wait
    if wait > 0:
        await asyncio.sleep(wait)
    return 0.0


def parse(stored: str | None) -> float | None:
    """The stored limit ('' or absent: none)."""
    return float(stored) if stored else None
