"""The per-credential vendor request budget, shared by every worker through Redis.

A credential is one vendor account (relay/providers/base.py `credential`: the vendor's name for
the operator's key, the vendor's name and a digest of the key for a tenant's own connection), so
one tenant's backlog spends its own account's budget, never another's, and no key reaches
Redis."""

from __future__ import annotations

import asyncio

from relay import keys
from relay.metrics import BUDGET_DEFERRED, BUDGET_REQUESTS, BUDGET_WAIT
from relay.store.autopipe import AutoPipeline, run_script
from relay.store.client import bind

MAX_WAIT = 1.0


async def acquire(pipe: AutoPipeline, credential: str, rate: float) -> float:
    """Wait for a send slot. Returns 0 when the caller may send now; otherwise the number of
    seconds to come back after (no slot was taken, so nothing is wasted by leaving)."""
    script = bind(pipe.redis).reserve_slot
    wait = float(
        await run_script(pipe, script, [keys.budget(credential)], [rate, MAX_WAIT])
    )
    if wait < 0:
        BUDGET_DEFERRED.labels(credential).inc()
        return -wait
    BUDGET_REQUESTS.labels(credential).inc()
    BUDGET_WAIT.labels(credential).observe(wait)
    if wait > 0:
        await asyncio.sleep(wait)
    return 0.0
