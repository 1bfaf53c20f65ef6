"""The polling policy as plain functions, so it can be read and tested alone (the delivery retry
policy is relay/delivery/retry.py).

Two ways to pick the next poll. Blind: an interval that grows while nothing changes and snaps
back to the minimum on a change. Aimed: when the vendor's phases have known lengths (learned per
vendor and status, relay/store/phases.py) and the run's current phase has a known start, the
next poll goes just after the phase's expected end, so a run costs about one request per status
instead of a growing series of them, and a transition is seen a moment after it happens instead
of up to one grown interval later. Aiming never goes below the minimum interval nor above the
maximum, and once the expected end has passed without a change the run falls back to blind
polling from the minimum, so a phase that runs long is still seen within about one minimum
interval. The shared vendor budget (relay/vendors/budget.py) applies to every poll either way.
"""

from __future__ import annotations

import random

from relay.delivery.retry import jitter
from relay.store.phases import Phase

# Measured with bench/polling.py (10,000 runs, 12 s vendor stages, 4 s minimum): x1.5 gave lag
# p50 4.37 s at 6.54 requests/run; x1.3 gave 3.86 s at 6.26 (fixed 4 s polling: ~13/run).
GROWTH = 1.3
#: How long after a phase's expected end (mean + one mean deviation) an aimed poll goes: room
#: for the pump's latency, so the aimed poll lands after the transition, not just before it.
MARGIN = 0.25
#: Aimed polls are spread by up to this fraction later (never earlier: early is a wasted request).
AIM_SPREAD = 0.02


def next_interval(current: float, changed: bool, low: float, high: float) -> float:
    """Snap back to the minimum on a change; otherwise grow by GROWTH, up to the maximum."""
    if changed or current <= 0:
        return low
    return min(high, max(low, current * GROWTH))


def phase_start(
    vendor_time: float | None, previous_poll: float | None, now: float, low: float
) -> tuple[float, bool]:
    """When the status first seen at `now` began, and whether that is known closely enough to
    learn a phase length from and to aim by. The vendor's own time of the change is taken within
    what the relay knows (after the poll that still saw the old status, not after `now`); without
    one, the middle of that window, close enough only when the window is short."""
    if vendor_time is not None:
        earliest = previous_poll if previous_poll is not None else vendor_time
        return min(now, max(earliest, vendor_time)), True
    if previous_poll is None:
        return now, False
    return (previous_poll + now) / 2, now - previous_poll <= 2 * low


def next_poll(
    now: float,
    since: float | None,
    phase: Phase | None,
    current: float,
    changed: bool,
    low: float,
    high: float,
) -> tuple[float, float]:
    """The delay to the next poll, and the blind interval to keep for the poll after it (0 once
    a poll is aimed, so a phase that outlasts its aim is polled again from the minimum).

    `since` is when the run's current status began (None: unknown), `phase` how long that status
    lasts at this vendor (None: not learned yet)."""
    if since is not None and phase is not None:
        delay = since + phase.mean + phase.dev + MARGIN - now
        if delay > 0:
            aimed = min(high, max(low, delay * random.uniform(1.0, 1.0 + AIM_SPREAD)))
            return aimed, 0.0
    interval = next_interval(current, changed, low, high)
    return jitter(interval, 0.05), interval


def backoff(errors: int, low: float, high: float) -> float:
    """Exponential back-off for vendor 5xx/timeouts, with full-ish jitter so a vendor blip does not
    line every run's retry up on the same instant."""
    return jitter(min(high, low * (2 ** max(0, errors - 1))), spread=0.25)
