"""The polling policy as plain functions, so it can be read and tested alone (the delivery retry
policy is relay/delivery/retry.py)."""

from __future__ import annotations

from relay.delivery.retry import jitter

# Measured with bench/polling.py (10,000 runs, 12 s vendor stages, 4 s minimum): x1.5 gave lag
# p50 4.37 s at 6.54 requests/run; x1.3 gave 3.86 s at 6.26 (fixed 4 s polling: ~13/run).
GROWTH = 1.3


def next_interval(current: float, changed: bool, low: float, high: float) -> float:
    """Snap back to the minimum on a change; otherwise grow by half, up to the maximum."""
    if changed or current <= 0:
        return low
    return min(high, max(low, current * GROWTH))


def backoff(errors: int, low: float, high: float) -> float:
    """Exponential back-off for vendor 5xx/timeouts, with full-ish jitter so a vendor blip does not
    line every run's retry up on the same instant."""
    return jitter(min(high, low * (2 ** max(0, errors - 1))), spread=0.25)
