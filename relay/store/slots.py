"""One line of send slots (lua/reserve_slot.lua): the keys it lives in, and the calls.

The vendor budget (relay/vendors/budget.py, a line per credential) and a subscription's
`rate_limit` (relay/delivery/rate_limit.py, a line per subscription, one tenant) are the same
mechanism; this is the one place that knows how a line's keys are named and what the scripts are
given. A line `L` is: `L` the next free slot, `L:held:<tenant>` each tenant's reservations,
`L:tenants` how many each holds (always the size of its set: a count is written by the script
that changes the set). Each ends as RESERVE_SLOT says, or with `drop` (erase-tenant)."""

from __future__ import annotations

import redis.asyncio as aioredis

from relay.store.autopipe import AutoPipeline, run_script
from relay.store.client import bind
from relay.store.leases import Lease

HELD = ":held:"


def reservations(line: str, tenant: str) -> str:
    """A tenant's reserved slots on the line (holder -> slot)."""
    return f"{line}{HELD}{tenant}"


def counts(line: str) -> str:
    """How many reservations each tenant holds on the line (tenant -> count)."""
    return f"{line}:tenants"


async def drop(r: aioredis.Redis, held_key: str, tenant: str) -> int:
    """Delete a tenant's reservations (`held_key`, as `reservations` names it) with its count on
    that line, in one script (lua/drop_reservations.lua)."""
    line = held_key.removesuffix(HELD + tenant)
    return int(
        await bind(r).drop_reservations(keys=[held_key, counts(line)], args=[tenant])
    )


async def reserve(
    pipe: AutoPipeline, line: str, interval: float, max_wait: float, holder: str, tenant: str
) -> float:
    """The script's answer: >= 0 the slot is taken (sleep that long, then send); < 0 come back
    after -value, the slot kept for `holder` (of `tenant`) meanwhile."""
    return float(
        await run_script(
            pipe,
            bind(pipe.redis).reserve_slot,
            [line, reservations(line, tenant), counts(line)],
            [interval, max_wait, holder, tenant, reservations(line, "")],
        )
    )


async def reserve_held(
    pipe: AutoPipeline,
    line: str,
    interval: float,
    max_wait: float,
    lease: Lease,
    tenant: str,
    *,
    record_key: str,
    field: str,
    usage_key: str = "",
    usage_ttl: int = 0,
) -> float | None:
    """`reserve` for the holder of `lease` (its member holds the slot), in one script with the
    lease check and the counts of a send (lua/poll_slot.lua): None when the lease was lost or
    the record is gone (nothing taken; the member released if its record is gone); else the
    slot's answer as `reserve` gives it, and when the slot is taken (>= 0) `field` of
    `record_key` and the usage hash's `vendor_requests` (`usage_key`, if any) counted one more."""
    found = await run_script(
        pipe,
        bind(pipe.redis).poll_slot,
        [
            lease.leases,
            record_key,
            lease.due,
            line,
            reservations(line, tenant),
            counts(line),
            usage_key,
        ],
        [
            lease.member,
            lease.token,
            field,
            interval,
            max_wait,
            tenant,
            reservations(line, ""),
            usage_ttl,
        ],
    )
    return None if found is None else float(found)
