"""The delivery retry policy as plain functions, so it can be read and tested alone."""

from __future__ import annotations

import random


def jitter(seconds: float, spread: float = 0.1) -> float:
    """`seconds` spread by ±`spread`, so many retries (or polls) due together do not line up on
    one instant."""
    return max(0.0, seconds * random.uniform(1 - spread, 1 + spread))


def delivery_delay(
    attempt: int, schedule: tuple[float, ...], retry_after: float | None, retry_after_max: float
) -> float | None:
    """Delay before attempt `attempt + 1`, or None when the schedule is spent (dead-letter).
    A subscriber's `Retry-After` wins over the schedule, within bounds."""
    if attempt > len(schedule):
        return None
    delay = jitter(schedule[attempt - 1])
    if retry_after is not None:
        delay = min(max(retry_after, 0.0), retry_after_max)
    return delay


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
