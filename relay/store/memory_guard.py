"""Redis memory against `maxmemory`: what /readyz and /metrics report, what makes the ingress
refuse new work before Redis refuses every write.

Under `noeviction` (the only policy the relay supports) a full Redis fails every script, so the
workers could no longer poll, deliver or expire anything. The ingress therefore stops taking NEW
runs and subscriptions above RELAY_MEMORY_THRESHOLD of `maxmemory` (503 `store_full` with
Retry-After), leaving the headroom to the workers, whose expiry and sweep bring memory back down.
Under an eviction policy Redis would silently drop state instead: the relay warns at start.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import redis.asyncio as aioredis
import structlog

log = structlog.get_logger("relay.memory")

#: Memory is read at most this often per process (INFO is cheap, but not free per request).
CACHE_SECONDS = 1.0
#: Policies under which Redis deletes keys by itself when full.
EVICTING = frozenset(
    {
        "allkeys-lru",
        "allkeys-lfu",
        "allkeys-random",
        "volatile-lru",
        "volatile-lfu",
        "volatile-random",
        "volatile-ttl",
    }
)


@dataclass(frozen=True)
class Memory:
    used: int
    maxmemory: int  # 0: no limit
    policy: str

    @property
    def ratio(self) -> float:
        """used / maxmemory, 0 when Redis has no limit."""
        return self.used / self.maxmemory if self.maxmemory else 0.0

    def as_json(self, threshold: float) -> dict[str, object]:
        return {
            "used_memory": self.used,
            "maxmemory": self.maxmemory,
            "ratio": round(self.ratio, 4),
            "threshold": threshold,
            "maxmemory_policy": self.policy,
        }


async def read(r: aioredis.Redis) -> Memory:
    info = await r.info("memory")
    return Memory(
        used=int(info.get("used_memory", 0)),
        maxmemory=int(info.get("maxmemory", 0)),
        policy=str(info.get("maxmemory_policy", "noeviction")),
    )


class Guard:
    """One per process: the latest reading, refreshed at most every CACHE_SECONDS."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self._at = 0.0
        self._last: Memory | None = None

    async def current(self, r: aioredis.Redis) -> Memory:
        now = time.monotonic()
        if self._last is None or now - self._at >= CACHE_SECONDS:
            self._last = await read(r)
            self._at = now
        return self._last

    async def full(self, r: aioredis.Redis) -> bool:
        """True when Redis is above the threshold of its maxmemory."""
        return (await self.current(r)).ratio >= self.threshold


async def warn_if_evicting(r: aioredis.Redis, who: str) -> None:
    """At start: say so loudly if Redis may evict the relay's state."""
    try:
        memory = await read(r)
    except Exception as exc:  # a start-up check must not stop the process
        log.warning("memory_policy_unknown", process=who, error=type(exc).__name__)
        return
    if memory.policy in EVICTING:
        log.warning(
            "redis_evicts_keys",
            process=who,
            maxmemory_policy=memory.policy,
            message="Redis may delete the relay's state when full; set maxmemory-policy noeviction",
        )


async def is_full(r: aioredis.Redis, threshold: float) -> bool:
    """True when Redis is above `threshold` of its maxmemory (the operations then refuse new
    work: relay/ops/guard.py `ensure_room`)."""
    guard: Guard | None = getattr(r, "_relay_memory_guard", None)
    if guard is None or guard.threshold != threshold:
        guard = Guard(threshold)
        r._relay_memory_guard = guard  # type: ignore[attr-defined]
    return await guard.full(r)
