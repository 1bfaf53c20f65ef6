"""The webhook bodies. Built once when a transition is recorded and stored as bytes, so every
retry and every subscriber gets the very same body under the same `webhook-id`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from relay.store.client import dumps, loads

STATUS_CHANGED = "run.status_changed"
START_FAILED = "run.start_failed"
TRACKING_FAILED = "run.tracking_failed"
PING = "ping"
EVENT_TYPES = (STATUS_CHANGED, START_FAILED, TRACKING_FAILED, PING)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def run_part(
    run: dict[str, str], *, status: str | None, previous: str | None, terminal: bool, sequence: int
) -> dict[str, Any]:
    part: dict[str, Any] = {
        "id": run["id"],
        "provider": run["provider"],
        "upstream_run_id": run.get("upstream_run_id") or None,
        "status": status,
        "previous_status": previous,
        "terminal": terminal,
        "sequence": sequence,
        "metadata": loads(run.get("metadata"), {}),
    }
    if run.get("agent_id"):
        part["agent_id"] = run["agent_id"]
    return part


def body(event_type: str, now: float, data: dict[str, Any]) -> str:
    return dumps({"type": event_type, "timestamp": iso(now), "data": data})


def ping_body(sub_id: str, now: float) -> str:
    return body(PING, now, {"subscription_id": sub_id, "message": "ping from run relay"})
