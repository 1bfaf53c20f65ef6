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

import orjson
from pydantic import BaseModel, ConfigDict, Field

from relay.store.client import loads

STATUS_CHANGED = "run.status_changed"
START_FAILED = "run.start_failed"
TRACKING_FAILED = "run.tracking_failed"
PING = "ping"
RUN_TYPES = (STATUS_CHANGED, START_FAILED, TRACKING_FAILED, PING)
# Operational events: the tenant's notices (relay/tenancy/notices.py) as webhooks. A subscription
# gets them only when its `filter.event_types` names them (an empty filter means the run events).
SUBSCRIPTION_DISABLED = "subscription.disabled"
VENDOR_UNAUTHORIZED = "vendor.unauthorized"
WATCH_LISTING_TRUNCATED = "watch.listing_truncated"
WATCH_SET_ASIDE = "watch.set_aside"
DELIVERIES_EXPIRED = "deliveries.expired"
OPERATIONAL_TYPES = (
    SUBSCRIPTION_DISABLED,
    VENDOR_UNAUTHORIZED,
    WATCH_LISTING_TRUNCATED,
    WATCH_SET_ASIDE,
    DELIVERIES_EXPIRED,
)
EVENT_TYPES = RUN_TYPES + OPERATIONAL_TYPES


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


AT = Field(description="When the relay noticed it (unix seconds).")
REASON = Field(description="What happened and what to do about it, in words.")


class SubscriptionDisabledData(Closed):
    subscription_id: str = Field(description="The subscription that was disabled (`sub_…`).")
    reason: str = REASON
    at: float = AT


class SubscriptionDisabled(Envelope):
    """One of the tenant's subscriptions was disabled: its endpoint answered 410 Gone, or every
    delivery failed for RELAY_DISABLE_AFTER. Its events wait, parked, until it is enabled again.
    Never sent to the subscription that was disabled; once per subscription per 5 minutes."""

    type: Literal["subscription.disabled"]
    data: SubscriptionDisabledData


class VendorUnauthorizedData(Closed):
    provider: str = Field(description="The vendor that refused the credentials.")
    run_id: str = Field(description="The first run that met the refusal.")
    status_code: int = Field(description="The vendor's answer: 401 or 403.")
    reason: str = REASON
    at: float = AT


class VendorUnauthorized(Envelope):
    """A vendor refused the relay's credentials for the tenant (401/403): runs back off and give
    up after RELAY_UNAUTHORIZED_WINDOW. Once per vendor per 5 minutes."""

    type: Literal["vendor.unauthorized"]
    data: VendorUnauthorizedData


class WatchListingTruncatedData(Closed):
    watch_id: str
    agent_id: str
    listed: int = Field(description="Runs the vendor paged out.")
    total: int | None = Field(description="Runs the vendor says the agent has.")
    reason: str = REASON
    at: float = AT


class WatchListingTruncated(Envelope):
    """A watched agent lists more runs than the vendor pages out: runs beyond those are not
    tracked by the watch. Once per watch per hour."""

    type: Literal["watch.listing_truncated"]
    data: WatchListingTruncatedData


class WatchSetAsideData(Closed):
    watch_id: str
    agent_id: str | None
    reason: str = REASON
    at: float = AT


class WatchSetAside(Envelope):
    """Listing a watched agent's runs failed RELAY_POISON_AFTER times in a row and the watch was
    set aside; `POST /v1/watches/{id}/refresh` brings it back. Once per watch per hour."""

    type: Literal["watch.set_aside"]
    data: WatchSetAsideData


class DeliveriesExpiredData(Closed):
    subscription_id: str = Field(description="The disabled subscription they waited for.")
    run_id: str
    count: int = Field(ge=1, description="How many deliveries expired.")
    at: float = AT


class DeliveriesExpired(Envelope):
    """Deliveries parked on a disabled subscription expired with their run's retention
    (RELAY_RETENTION). Once per subscription per 5 minutes."""

    type: Literal["deliveries.expired"]
    data: DeliveriesExpiredData


MODELS: dict[str, type[Envelope]] = {
    STATUS_CHANGED: StatusChanged,
    START_FAILED: StartFailed,
    TRACKING_FAILED: TrackingFailed,
    PING: Ping,
    SUBSCRIPTION_DISABLED: SubscriptionDisabled,
    VENDOR_UNAUTHORIZED: VendorUnauthorized,
    WATCH_LISTING_TRUNCATED: WatchListingTruncated,
    WATCH_SET_ASIDE: WatchSetAside,
    DELIVERIES_EXPIRED: DeliveriesExpired,
}
assert tuple(MODELS) == EVENT_TYPES


def iso(ts: float) -> str:
    """`YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC): isoformat, which is C, rather than strftime."""
    return datetime.fromtimestamp(ts, UTC).replace(tzinfo=None).isoformat("T", "microseconds") + "Z"


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
    """The body as stored and sent: validated against its model (a wrong shape raises here).

    A status change (every transition a poll records, bench/polling.py) is validated strictly
    (nothing coerced, so the model holds exactly what was given) and the given dict is written
    by orjson: the same JSON as the model's own writer, in the model's field order (`run_part`
    builds it so; tests/test_webhook_schemas.py compares), at a fraction of its CPU on a large
    vendor snapshot. Any other body, or one orjson cannot write, goes through the model's."""
    envelope = {"type": event_type, "timestamp": iso(now), "data": data}
    model = MODELS[event_type]
    if event_type == STATUS_CHANGED and data.get("run", {}).get("agent_id", "") is not None:
        model.model_validate(envelope, strict=True)
        try:
            return orjson.dumps(envelope).decode()
        except TypeError:
            pass
    return model.model_validate(envelope).model_dump_json()


def ping_body(sub_id: str, now: float) -> str:
    return body(PING, now, {"subscription_id": sub_id, "message": "ping from run relay"})


def notice_body(notice: dict[str, Any]) -> str:
    """The operational event telling a notice (`{"type", ..., "at"}`, relay/tenancy/notices.py):
    its `data` is the notice without its type, validated against the type's model."""
    data = {k: v for k, v in notice.items() if k != "type"}
    return body(notice["type"], float(notice["at"]), data)
