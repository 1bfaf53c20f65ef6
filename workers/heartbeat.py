"""Worker liveness for `relay check`: a file touched by the worker's own event loop. A stuck loop
or a dead process stops touching it; an unreachable Redis does not (restarting would not help)."""

from __future__ import annotations

import os
import time
from pathlib import Path

DEFAULT_PATH = Path(os.environ.get("RELAY_HEARTBEAT_FILE", "/tmp/relay-worker.heartbeat"))  # noqa: S108
STALE_AFTER = 30.0


def beat(path: Path = DEFAULT_PATH) -> None:
    path.write_text(str(time.time()))


def healthy(path: Path = DEFAULT_PATH, stale_after: float = STALE_AFTER) -> bool:
    try:
        return time.time() - path.stat().st_mtime < stale_after
    except OSError:
        return False
