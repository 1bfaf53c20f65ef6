"""One line of send slots (lua/reserve_slot.lua): the keys it lives in, and the calls.

The vendor budget (relay/vendors/budget.py, a line per credential) and a subscription's
`rate_limit` (relay/delivery/rate_limit.py, a line per subscription, one tenant) are the same
mechanism; this is the one place that knows how a line's keys are named and what the scripts are
given. A line `L` is: `L` the next free slot, `L:held:<tenant>` each tenant's reservations,
`L:tenants` how many each holds (always the size of its set: a count is written by the script
that changes the set). Each ends as RESERVE_SLOT says, or with `drop` (erase-tenant)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
    return int(await bind(r).drop_reservations(keys=[held_key, counts(line)], args=[tenant]))


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


@dataclass(frozen=True)
class Held:
    """A send a lease holder is about to make (a poll): the lease it holds, the line it takes
    its slot on and its tenant there, the record that counts the send (`record_key`) and the
    tenant's usage hash ('' for none)."""

    lease: Lease
    line: str
    tenant: str
    record_key: str
    usage_key: str = ""
    usage_ttl: int = 0


async def reserve_held(
    pipe: AutoPipeline,
    sends: Sequence[Held],
    interval: float,
    max_wait: float,
    *,
    field: str,
) -> list[float | None]:
    """`reserve` for each send of `sends`, in order, in one script with the lease checks and
    the counts of a send (lua/held_slots.lua), one round trip for all: each answer None when
    its lease was lost or its record is gone (nothing taken; the member released if its record
    is gone); else the slot's answer as `reserve` gives it, and when the slot is taken (>= 0)
    `field` of its record (none when '') and the usage hash's `vendor_requests` counted one
    more. All the sends hold leases of one due set."""
    if not sends:
        return []
    first = sends[0].lease
    script_keys = [first.leases, first.due]
    args: list[str | float | int] = [field, interval, max_wait]
    for send in sends:
        line = send.line
        script_keys += [
            send.record_key,
            line,
            reservations(line, send.tenant),
            counts(line),
            send.usage_key,
        ]
        args += [
            send.lease.member,
            send.lease.token,
            send.tenant,
            reservations(line, ""),
            send.usage_ttl,
        ]
    found = await run_script(pipe, bind(pipe.redis).held_slots, script_keys, args)
    return [float(answer) if answer else None for answer in found]
