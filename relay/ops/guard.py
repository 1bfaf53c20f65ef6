"""The checks an operation makes before it takes new work: the SSRF check of subscriber and
callback URLs when they are given (send time checks again), and room left in Redis."""

from __future__ import annotations

from relay.delivery.ssrf import UnsafeURL, check_url
from relay.ops.deps import Deps
from relay.ops.errors import Invalid, StoreFull
from relay.store import memory_guard


async def checked_url(deps: Deps, url: str, field: str) -> str:
    try:
        await check_url(url, deps.settings.allow_private_urls)
    except UnsafeURL as exc:
        raise Invalid(field, f"{field}: {exc}", "unsafe_url") from None
    return url


async def ensure_room(deps: Deps) -> None:
    """Refuse new work (503 with Retry-After) while Redis is above RELAY_MEMORY_THRESHOLD of its
    maxmemory: the workers' expiry and sweep bring it down."""
    if await memory_guard.is_full(deps.redis, deps.settings.memory_threshold):
        raise StoreFull()
