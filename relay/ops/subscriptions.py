"""Subscriptions: who gets webhooks, with which filter and secrets; enable/disable, rotate the
secret, send a test ping, and the tenant's callback-URL secret.

Callback subscriptions (made by a run's `callback_url`) belong to their run, not to the tenant's
list: every operation here answers NotFound for them, as the API's contract says."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from relay.delivery import events, rate_limit, signing, sub_headers
from relay.ids import new_id
from relay.ops.deps import Deps
from relay.ops.errors import Conflict, NotFound, QuotaExceeded
from relay.ops.guard import checked_url, ensure_room
from relay.ops.inputs import SubscriptionCreate, SubscriptionPatch
from relay.secret_box import seal, unseal
from relay.store import keys, lanes
from relay.store import subscriptions as store
from relay.store.client import dumps, loads
from relay.tenancy import quotas

CALLBACK = store.CALLBACK  # the `kind` of a run's callback subscription
#: The notice the workers keep when they disable a subscription (workers/deliver.py).
DISABLED_NOTICE = events.SUBSCRIPTION_DISABLED


@dataclass(frozen=True)
class Created:
    subscription: dict[str, Any]
    secret: str  # shown once


@dataclass(frozen=True)
class Rotated:
    id: str
    secret: str  # shown once
    previous_secret_expires_at: float


@dataclass(frozen=True)
class Pinged:
    event_id: str
    type: str = events.PING


def public(sub: dict[str, str]) -> dict[str, Any]:
    """A subscription as the API and console show it (never its secrets or header values)."""
    return {
        "id": sub["id"],
        "url": sub["url"],
        "description": sub.get("description") or "",
        "filter": loads(sub.get("filter"), {}),
        "enabled": sub.get("enabled") == "1",
        "disabled_reason": sub.get("disabled_reason") or None,
        "disabled_at": float(sub["disabled_at"]) if sub.get("disabled_at") else None,
        "failing_since": float(sub["failing_since"]) if sub.get("failing_since") else None,
        "kind": sub.get("kind") or "subscription",
        "headers": sub_headers.names(sub.get("headers")),  # names only: values are write-only
        "rate_limit": rate_limit.parse(sub.get("rate_limit")),
        "run_id": sub.get("run_id") or None,
        "created_at": float(sub["created_at"]),
        "updated_at": float(sub.get("updated_at") or sub["created_at"]),
    }


async def own(deps: Deps, tenant: str, sub_id: str) -> dict[str, str]:
    """The tenant's own (non-callback) subscription record, or NotFound."""
    sub = await store.get_tenant_sub(deps.redis, tenant, sub_id)
    if sub is None or sub.get("kind") == store.CALLBACK:
        raise NotFound("subscription")
    return sub


def _seal(deps: Deps, secret: str) -> str:
    return seal(secret, deps.settings.relay_encryption_key)


def _options(deps: Deps, headers: dict[str, str] | None, limit: float | None) -> dict[str, str]:
    """The `headers` (sealed) and `rate_limit` fields to store; None leaves a field as it is."""
    out: dict[str, str] = {}
    if headers is not None:
        out["headers"] = (
            sub_headers.sealed(headers, deps.settings.relay_encryption_key) if headers else ""
        )
    if limit is not None:
        out["rate_limit"] = repr(limit) if limit else ""
    return out


async def create(deps: Deps, tenant: str, body: SubscriptionCreate) -> Created:
    url = await checked_url(deps, body.url, "url")
    r = deps.redis
    await ensure_room(deps)
    secret = signing.new_secret()
    sub_id = new_id("sub")
    fields = store.new_sub_fields(
        sub_id=sub_id,
        tenant=tenant,
        url=url,
        filter_=body.filter.model_dump(),
        description=body.description,
        sealed_secret=_seal(deps, secret),
        now=time.time(),
    )
    fields.update(_options(deps, body.headers, body.rate_limit))
    limit = deps.settings.max_subscriptions
    if not await quotas.add_subscription(r, tenant, sub_id, fields, limit):
        raise QuotaExceeded("RELAY_MAX_SUBSCRIPTIONS", limit, "subscriptions")
    return Created(public(fields), secret)


async def list_all(deps: Deps, tenant: str) -> list[dict[str, Any]]:
    subs = await store.tenant_subs(deps.redis, tenant)
    return [public(s) for s in subs if s.get("kind") != store.CALLBACK]


async def get(deps: Deps, tenant: str, sub_id: str) -> dict[str, Any]:
    return public(await own(deps, tenant, sub_id))


async def patch(
    deps: Deps, tenant: str, sub_id: str, body: SubscriptionPatch, *, by: str = "by the tenant"
) -> dict[str, Any]:
    """Change url, filter, description, enabled. Enabling a disabled subscription re-schedules
    its waiting lanes; disabling records `disabled <by>` as the reason (which view did it)."""
    sub = await own(deps, tenant, sub_id)
    r = deps.redis
    now = time.time()
    fields: dict[str, str] = {"updated_at": repr(now)}
    if body.url is not None:
        fields["url"] = await checked_url(deps, body.url, "url")
    if body.filter is not None:
        fields["filter"] = dumps(body.filter.model_dump())
    if body.description is not None:
        fields["description"] = body.description
    fields.update(_options(deps, body.headers, body.rate_limit))
    resume = False
    if body.enabled is not None:
        fields["enabled"] = "1" if body.enabled else "0"
        # Resumed on every enable, not only a change: a retried PATCH after a crash between
        # the two writes below still puts the parked lanes back (resume_lanes is idempotent).
        resume = body.enabled
        if body.enabled and sub.get("enabled") != "1":
            fields.update(disabled_reason="", disabled_at="", failing_since="")
        elif not body.enabled:
            fields.update(disabled_reason=f"disabled {by}", disabled_at=repr(now))
    await r.hset(keys.subscription(sub["id"]), mapping=fields)
    if resume:
        await store.resume_lanes(r, sub["id"], now)
        # Enabled again: a later disable is news again (workers/deliver.py keeps one
        # `subscription.disabled` notice per subscription per gate period).
        await r.delete(keys.notice_gate(tenant, f"{DISABLED_NOTICE}:{sub['id']}"))
    fresh = await store.get_sub(r, sub["id"])
    return public(fresh or sub)


async def delete(deps: Deps, tenant: str, sub_id: str) -> None:
    await store.delete_sub(deps.redis, await own(deps, tenant, sub_id))


async def rotate_secret(deps: Deps, tenant: str, sub_id: str) -> Rotated:
    """A new signing secret; the old one keeps signing beside it for `secret_grace`."""
    sub = await own(deps, tenant, sub_id)
    grace = deps.settings.secret_grace
    secret = signing.new_secret()
    now = time.time()
    secrets = store.rotated_secrets(sub, _seal(deps, secret), now, grace)
    await deps.redis.hset(
        keys.subscription(sub["id"]), mapping={"secrets": secrets, "updated_at": repr(now)}
    )
    return Rotated(sub["id"], secret, now + grace)


async def send_test(deps: Deps, tenant: str, sub_id: str) -> Pinged:
    sub = await own(deps, tenant, sub_id)
    if sub.get("enabled") != "1":
        raise Conflict("subscription_disabled", "enable the subscription before testing it")
    now = time.time()
    body = events.ping_body(sub["id"], now)
    return Pinged(await lanes.send_ping(deps.redis, sub, now, events.PING, body))


async def callback_secret(deps: Deps, tenant: str, *, rotate: bool = False) -> str:
    """Reveal the tenant's callback signing secret once; `rotate` makes a new one (the old stops
    signing at once: callbacks are per-run, so there is no endpoint to migrate)."""
    r = deps.redis
    key_name = keys.tenant_callback_secret(tenant)
    enc_key = deps.settings.relay_encryption_key
    if rotate:
        await r.set(key_name, seal(signing.new_secret(), enc_key))
        await r.delete(key_name + ":revealed")
    else:
        await r.set(key_name, seal(signing.new_secret(), enc_key), nx=True)
    if not await r.set(key_name + ":revealed", "1", nx=True):
        raise Conflict(
            "already_revealed",
            "the callback secret was already shown; "
            "POST /v1/callback-secret?rotate=true makes a new one",
        )
    stored = await r.get(key_name)
    return unseal(stored, enc_key)
