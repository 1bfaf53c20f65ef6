"""The webhook bodies. Built once when a transition is recorded and stored as bytes, so every
retry and every subscriber gets the very same body under the same `webhook-id`.

Every body is built through the pydantic models below, and the JSON Schema published in
`/openapi.json` (relay/delivery/webhook_schemas.py) is generated from the very same models, so the
bodies
and their published schema cannot drift apart: a field added here appears in both, and a body
that does not fit its model is refused here, at build time, not by a receiver.

What the vendor said (the upstream run object, a refusal's details) is carried as it came: the
models type it loosely (`dict[str, Any]`, extra fields allowed) so a vendor adding a field can
never make the relay drop an event; its published schema comes from the vendor's own contract.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from relay.store.client import loads

STATUS_CHANGED = "run.status_changed"
START_FAILED = "run.start_failed"
TRACKING_FAILED = "run.tracking_failed"
PING = "ping"
EVENT_TYPES = (STATUS_CHANGED, START_FAILED, TRACKING_FAILED, PING)


class Closed(BaseModel):
    """The relay's own objects: exactly these fields (a receiver may rely on the schema)."""

    model_config = ConfigDict(extra="forbid")


class RunPart(Closed):
    """`data.run`: the relay's view of the run at this transition."""

    id: str = Field(description="The relay's run id (`run_…`).")
    provider: str = Field(description="The vendor: `citedy` or `autoposting`.")
    upstream_run_id: str | None = Field(description="The vendor's run id; null before a start.")
    status: str | None = Field(
        description="The vendor status now (vendors add statuses: do not treat this as closed)."
    )
    previous_status: str | None = Field(description="The status before this transition.")
    terminal: bool = Field(description="True when the run will send no more events.")
    sequence: int = Field(
        ge=1, description="1, 2, 3… per run, in the order observed: receivers can check order."
    )
    metadata: dict[str, Any] = Field(description="Echoed from the request that made the run.")
    agent_id: str | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="Autoposting: the agent the run belongs to (absent for other vendors).",
    )


class StatusChangedData(Closed):
    run: RunPart
    upstream: dict[str, Any] = Field(
        description="The vendor's run object as last read (result included when done)."
    )


class StartError(BaseModel):
    """Why the vendor refused the start. Extra fields are the vendor's own details (for a
    Citedy 402: `credits_required`, `breakdown`, `topup`)."""

    model_config = ConfigDict(extra="allow")

    error: str = Field(description="The vendor's error code, or `vendor_unauthorized`.")
    message: str
    status_code: int | None = Field(description="The vendor's HTTP status.")
    credentials: bool | None = Field(
        default=None,
        exclude_if=lambda v: v is None,
        description="True when the vendor refused the relay's credentials.",
    )


class StartFailedData(Closed):
    run: RunPart
    error: StartError


class TrackingError(Closed):
    error: str = Field(
        description="Why tracking stopped: `tracking_window`, `not_found` or `unauthorized` "
        "(more reasons may be added)."
    )
    message: str


class TrackingFailedData(Closed):
    run: RunPart
    error: TrackingError


class PingData(Closed):
    subscription_id: str
    message: str


class Envelope(Closed):
    type: str
    timestamp: str = Field(
        json_schema_extra={"format": "date-time"},
        description="When the relay observed the transition (UTC).",
    )


class StatusChanged(Envelope):
    """A run's vendor status changed: one per (run, status), in order."""

    type: Literal["run.status_changed"]
    data: StatusChangedData


class StartFailed(Envelope):
    """The vendor refused to start the run (400/402/409): the run ends here."""

    type: Literal["run.start_failed"]
    data: StartFailedData


class TrackingFailed(Envelope):
    """The relay gave up on the run: the vendor 404s, refused the credentials, or the tracking
    window ran out."""

    type: Literal["run.tracking_failed"]
    data: TrackingFailedData


class Ping(Envelope):
    """Sent by `POST /v1/subscriptions/{id}/test`, to that subscription only."""

    type: Literal["ping"]
    data: PingData


MODELS: dict[str, type[Envelope]] = {
    STATUS_CHANGED: StatusChanged,
    START_FAILED: StartFailed,
    TRACKING_FAILED: TrackingFailed,
    PING: Ping,
}
assert tuple(MODELS) == EVENT_TYPES


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
    """The body as stored and sent: validated against its model (a wrong shape raises here)."""
    model = MODELS[event_type].model_validate(
        {"type": event_type, "timestamp": iso(now), "data": data}
    )
    return model.model_dump_json()


def ping_body(sub_id: str, now: float) -> str:
    return body(PING, now, {"subscription_id": sub_id, "message": "ping from run relay"})
