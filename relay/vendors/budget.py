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

from relay.metrics import BUDGET_DEFERRED, BUDGET_REQUESTS, BUDGET_WAIT, child
from relay.store import keys, slots
from relay.store.autopipe import AutoPipeline
from relay.store.leases import Lease

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
    return await _answer(credential, wait)


async def acquire_held(
    pipe: AutoPipeline,
    credential: str,
    rate: float,
    lease: Lease,
    tenant: str,
    *,
    record_key: str,
    field: str,
    usage: tuple[str, int] = ("", 0),
) -> float | None:
    """`acquire` for the holder of `lease` (a poll), with its lease check and the counts of the
    request it is about to send in the same script (relay/store/slots.py `reserve_held`): None
    when the lease was lost or the record is gone (nothing taken, nothing to write); else as
    `acquire`, the request already counted (`field` on `record_key`, `vendor_requests` in the
    tenant's `usage` (key, ttl)) when the answer is 0."""
    wait = await slots.reserve_held(
        pipe,
        keys.budget(credential),
        1.0 / rate,
        MAX_WAIT,
        lease,
        tenant,
        record_key=record_key,
        field=field,
        usage_key=usage[0],
        usage_ttl=usage[1],
    )
    return None if wait is None else await _answer(credential, wait)


async def _answer(credential: str, wait: float) -> float:
    """The slot's answer made the caller's: metered, slept to when it is near, or the seconds to
    come back after."""
    label = metric_label(credential)
    if wait < 0:
        child(BUDGET_DEFERRED, label).inc()
        return -wait - LEAD  # a deferral is always further off than MAX_WAIT > LEAD
    child(BUDGET_REQUESTS, label).inc()
    child(BUDGET_WAIT, label).observe(wait)
    if wait > 0:
        await asyncio.sleep(wait)
    return 0.0
