"""Turns for work that cannot be served now, so a backlog comes back spread out instead of all
at once (the herd that made one tenant's backlog delay everyone's polls and deliveries:
bench/fairness.py).

A deferred caller gets its own turn: the later of the last turn given on `turns_key`, a floor
(e.g. the budget's next free slot) and now, plus `interval`. Not a reservation: at its turn the
caller tries again like anyone, and if it still cannot be served it takes a later turn. Time
comes from Redis."""

from __future__ import annotations

import random
from typing import Any

from redis.commands.core import AsyncScript

from relay import keys
from relay.store.autopipe import AutoPipeline, run_script

#: The furthest a busy subscription's lane is put off (seconds).
BUSY_HORIZON = 5.0

# KEYS: turns, floor ('' for none). ARGV: interval (s), ttl (s), horizon (s; 0: none): turns are
# never given further ahead than that (the caller spreads those at the horizon itself).
# Returns seconds until the turn.
TAKE_TURN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local floor = now
if KEYS[2] ~= '' then floor = math.max(now, tonumber(redis.call('GET', KEYS[2]) or '0')) end
local turn = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), floor) + tonumber(ARGV[1])
local horizon = tonumber(ARGV[3])
if horizon > 0 and turn > now + horizon then turn = now + horizon end
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
    horizon: float = 0.0,
) -> float:
    """Seconds until this caller's turn. `turns_key` ends `ttl` seconds after the last turn."""
    args = [interval, ttl, horizon]
    return float(await run_script(pipe, _script(pipe), [turns_key, floor_key], args))


async def busy_turn(pipe: AutoPipeline, sub_id: str, base: float, cap: int) -> float:
    """When a subscription already has `cap` deliveries in flight (on this worker): its waiting
    lanes come back spread, 4·cap per `base` seconds, instead of every lane every `base`. The
    spread is bounded by BUSY_HORIZON (lanes beyond it come back at random within it), so a
    subscriber that answers fast still gets its whole backlog offered at least that often."""
    turn = await take_turn(
        pipe, keys.subscription(sub_id) + ":turns", base / (4 * cap), ttl=60, horizon=BUSY_HORIZON
    )
    if turn >= BUSY_HORIZON:
        return random.uniform(base, BUSY_HORIZON)
    return max(base, turn)
