"""Turns for work that cannot be served now, so a backlog comes back spread out instead of all
at once (the herd that made one tenant's backlog delay other tenants' polls and deliveries:
bench/fairness.py).

A deferred caller gets its own turn: the later of the last turn given on `turns_key`, a floor
(e.g. the budget's next free slot) and now, plus `interval`. Not a reservation: at its turn the
caller tries again like anyone, and if it still cannot be served it takes a later turn. Time
comes from Redis."""

from __future__ import annotations

from typing import Any

from redis.commands.core import AsyncScript

from relay.store.autopipe import AutoPipeline, run_script

# KEYS: turns, floor ('' for none). ARGV: interval (s), ttl (s). Returns seconds until the turn.
TAKE_TURN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local floor = now
if KEYS[2] ~= '' then floor = math.max(now, tonumber(redis.call('GET', KEYS[2]) or '0')) end
local turn = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), floor) + tonumber(ARGV[1])
redis.call('SET', KEYS[1], tostring(turn), 'EX', ARGV[2])
return tostring(turn - now)
"""


def _script(pipe: AutoPipeline) -> AsyncScript:
    r: Any = pipe.redis
    script: AsyncScript | None = getattr(r, "_relay_take_turn", None)
    if script is None:
        script = r.register_script(TAKE_TURN)
        r._relay_take_turn = script
    return script


async def take_turn(
    pipe: AutoPipeline,
    turns_key: str,
    interval: float,
    *,
    floor_key: str = "",
    ttl: int = 3600,
) -> float:
    """Seconds until this caller's turn. `turns_key` ends `ttl` seconds after the last turn."""
    args = [interval, ttl]
    return float(await run_script(pipe, _script(pipe), [turns_key, floor_key], args))
