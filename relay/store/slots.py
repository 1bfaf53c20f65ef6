"""One line of send slots (lua/reserve_slot.lua): the keys it lives in, and the call.

The vendor budget (relay/vendors/budget.py, a line per credential) and a subscription's `rate_limit`
(relay/delivery/rate_limit.py, a line per subscription, one tenant) are the same mechanism; this is
the
one place that knows how a line's keys are named and what the script is given. A line `L` is:
`L` the next free slot, `L:held:<tenant>` each tenant's reservations, `L:tenants` how many each
holds. Each ends as RESERVE_SLOT says."""

from __future__ import annotations

from relay.store.autopipe import AutoPipeline, run_script
from relay.store.client import bind


def reservations(line: str, tenant: str) -> str:
    """A tenant's reserved slots on the line (holder -> slot)."""
    return f"{line}:held:{tenant}"


async def reserve(
    pipe: AutoPipeline, line: str, interval: float, max_wait: float, holder: str, tenant: str
) -> float:
    """The script's answer: >= 0 the slot is taken (sleep that long, then send); < 0 come back
    after -value, the slot kept for `holder` (of `tenant`) meanwhile."""
    return float(
        await run_script(
            pipe,
            bind(pipe.redis).reserve_slot,
            [line, reservations(line, tenant), f"{line}:tenants"],
            [interval, max_wait, holder, tenant, reservations(line, "")],
        )
    )
