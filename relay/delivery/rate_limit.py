"""A subscription's `rate_limit`: at most n deliveries per second to it, across every worker.

The same send slots as the vendor budget (lua/reserve_slot.lua, on Redis's clock so workers on
different machines agree): each send takes the next free slot, slots 1/n apart, so no one-second
window holds more than n + 1 sends (n when the window starts at a slot). A lane whose slot is
further off than MAX_WAIT does not wait in its worker: it reserves the slot under its own name
and is put back on the delivery schedule for just before it (no attempt counted, no delivery
slot held), so a slow-rated subscriber delays nobody else and its lanes keep their order of
arrival instead of all coming back at the same free slot.
"""

from __future__ import annotations

import asyncio

from relay.store import keys, slots
from relay.store.autopipe import AutoPipeline

MAX_WAIT = 0.05
#: How much before its reserved slot a lane is due again (less than MAX_WAIT, so it takes the
#: slot when it comes back).
LEAD = 0.025
FIELD = "rate_limit"
MAX_RATE = 1000.0


def key(sub_id: str) -> str:
    """The subscription's line of send slots (relay/store/slots.py)."""
    return keys.subscription(sub_id) + ":rate"


async def reserve(pipe: AutoPipeline, sub_id: str, rate: float, holder: str) -> float:
    """0 when the caller may send now (after a wait of at most MAX_WAIT, slept here); otherwise
    the seconds until it should come back, its slot kept for it under `holder`."""
    # One tenant per subscription: its lanes queue among themselves, first come, first served.
    wait = await slots.reserve(pipe, key(sub_id), 1.0 / rate, MAX_WAIT, holder, "")
    if wait < 0:
        return -wait - LEAD  # a deferral is always further off than MAX_WAIT > LEAD
    if wait > 0:
        await asyncio.sleep(wait)
    return 0.0


def parse(stored: str | None) -> float | None:
    """The stored limit ('' or absent: none)."""
    return float(stored) if stored else None
