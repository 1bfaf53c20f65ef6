"""The per-credential vendor request budget, shared by every worker through Redis.

A credential is one vendor account (relay/vendors/base.py `credential`: the vendor's name for
the operator's key, the vendor's name and a digest of the key for a tenant's own connection), so
one tenant's backlog spends its own account's budget, never another's, and no key reaches
Redis.

A caller the budget cannot serve within MAX_WAIT reserves its slot under its own name (the run
or watch it works for) and comes back for it (lua/reserve_slot.lua): a credential with thousands
of runs due is claimed about once per request it may send, not thousands of times a second, so
its backlog leaves the shared pumps to everyone else (bench/fairness.py). Reservations are kept
per tenant, so tenants sharing the operator's account are not queued behind one another's
backlog: a tenant holding fewer reservations takes the first one past MAX_WAIT of the tenant
holding the most."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from relay.metrics import BUDGET_DEFERRED, BUDGET_REQUESTS, BUDGET_WAIT, child
from relay.store import keys, slots
from relay.store.autopipe import AutoPipeline

MAX_WAIT = 1.0
#: How much before its reserved slot a deferred caller is due again: it is claimed a little
#: early and sleeps to the slot in its worker, so pump latency does not make it miss the slot.
LEAD = 0.2


def metric_label(credential: str) -> str:
    """The budget metrics' label of a credential, from a bounded set: the provider for the
    operator's shared account, `<provider>:own` for every tenant's own connection together (a
    digest per connection and per key rotation would add label sets that never go away)."""
    provider, _, digest = credential.partition(":")
    return f"{provider}:own" if digest else provider


async def acquire(
    pipe: AutoPipeline, credential: str, rate: float, holder: str, tenant: str
) -> float:
    """Wait for a send slot. Returns 0 when the caller may send now; otherwise the number of
    seconds to come back after, its slot kept for it under `holder` (of `tenant`) meanwhile."""
    wait = await slots.reserve(pipe, keys.budget(credential), 1.0 / rate, MAX_WAIT, holder, tenant)
    return await answer(credential, wait)


async def acquire_held(
    pipe: AutoPipeline, sends: Sequence[slots.Held], rate: float, *, field: str
) -> list[float | None]:
    """The send slots of lease holders (polls, starts), each on its credential's line (`slots.Held`
    names it: `keys.budget`), with their lease checks and the counts of the requests they are
    about to send (`field` on each record, `vendor_requests` in the tenant's usage), in one
    script for all (relay/store/slots.py `reserve_held`). Each answer as the script gives it:
    None when the lease was lost or the record is gone (nothing taken, nothing to write); < 0
    deferred (come back after -answer, less LEAD: `answer`); >= 0 taken, the request already
    counted, sent after sleeping that long (`answer`)."""
    return await slots.reserve_held(pipe, sends, 1.0 / rate, MAX_WAIT, field=field)


async def answer(credential: str, wait: float) -> float:
    """A slot's answer (`reserve`'s, or `acquire_held`'s when not None) made the caller's:
    metered, slept to when it is near (0: send now), or the seconds to come back after."""
    label = metric_label(credential)
    if wait < 0:
        child(BUDGET_DEFERRED, label).inc()
        return -wait - LEAD  # a deferral is always further off than MAX_WAIT > LEAD
    child(BUDGET_REQUESTS, label).inc()
    child(BUDGET_WAIT, label).observe(wait)
    if wait > 0:
        await asyncio.sleep(wait)
    return 0.0
