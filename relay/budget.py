"""The per-credential vendor request budget, shared by every worker through Redis.

A credential is one vendor account (relay/providers/base.py `credential`: the vendor's name for
the operator's key, the vendor's name and a digest for a tenant's own connection), so one
tenant's backlog spends its own account's budget, never another's.

A caller the budget cannot serve within MAX_WAIT is deferred, and is given its own turn: the
deferred callers of one credential are spaced 1/rate apart after the budget's next free slot
(relay/turns.py, a second small script run only on deferral). Without turns, every deferred caller
came back at the next free slot at once: a credential with 5,000 runs due re-claimed all 5,000
every second (the herd), and that churn in the shared pumps is what delayed other tenants' polls
and deliveries (bench/fairness.py)."""

from __future__ import annotations

import asyncio
import time

from relay import keys
from relay.metrics import BUDGET_DEFERRED, BUDGET_REQUESTS, BUDGET_WAIT
from relay.store.autopipe import AutoPipeline, run_script
from relay.store.client import bind
from relay.turns import take_turn

MAX_WAIT = 1.0


def _turns_key(credential: str) -> str:
    """The last turn given to a deferred caller; ends an hour after the last deferral."""
    return keys.budget(credential) + ":turns"


async def acquire(pipe: AutoPipeline, credential: str, rate: float) -> float:
    """Wait for a send slot. Returns 0 when the caller may send now; otherwise the number of
    seconds to come back after (its turn; no slot was taken, so nothing is wasted by leaving)."""
    script = bind(pipe.redis).reserve_slot
    wait = float(
        await run_script(pipe, script, [keys.budget(credential)], [rate, time.time(), MAX_WAIT])
    )
    if wait < 0:
        BUDGET_DEFERRED.labels(credential).inc()
        turn = await take_turn(
            pipe, _turns_key(credential), 1 / rate, floor_key=keys.budget(credential)
        )
        return max(-wait, turn)
    BUDGET_REQUESTS.labels(credential).inc()
    BUDGET_WAIT.labels(credential).observe(wait)
    if wait > 0:
        await asyncio.sleep(wait)
    return 0.0
