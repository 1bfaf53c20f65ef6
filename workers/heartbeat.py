"""Worker liveness for `relay check`: a file touched by the worker's own event loop, and only while
every pump's loop keeps turning. A stuck event loop, a hung pump or a dead process stops touching
it; an unreachable Redis does not (the pumps turn on, backing off; restarting would not help)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

# Where the file is (RELAY_HEARTBEAT_FILE) and how old it may be for `relay check`
# (RELAY_CHECK_MAX_AGE) are settings (relay/config): the callers pass them.


def beat(path: Path) -> None:
    path.write_text(str(time.time()))


class Turning(Protocol):
    name: str
    last_beat: float  # time.monotonic() of the loop's last turn


def beat_if_turning(pumps: Iterable[Turning], stale_after: float, path: Path) -> list[str]:
    """Beat unless a pump has not turned its loop for `stale_after` seconds; returns the names of
    the hung pumps (none: it beat)."""
    now = time.monotonic()
    hung = [p.name for p in pumps if now - p.last_beat > stale_after]
    if not hung:
        beat(path)
    return hung


def healthy(path: Path, stale_after: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime < stale_after
    except OSError:
        return False
