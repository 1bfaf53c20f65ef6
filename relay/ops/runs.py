"""Runs: start or track one, read it with its events and each subscriber's delivery state, list,
refresh (poll now), stop tracking."""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from relay import tracing
from relay.delivery import signing
from relay.ids import new_id
from relay.ops import connections
from relay.ops.deps import Deps
from relay.ops.errors import Conflict, Invalid, NotFound, QuotaExceeded, invalid_from
from relay.ops.guard import checked_url, ensure_room
from relay.ops.inputs import RunCreate
from relay.ops.run_summary import delivery_summary
from relay.secret_box import seal
from relay.store import keys, leases, lifecycle, snapshots
from relay.store import subscriptions as subs_store
from relay.store.client import dumps, loads
from relay.store.runs import (
    ACTIVE_STATES,
    STARTING,
    TRACKING,
    body_hash,
    count_runs,
    create_run,
    cursor_of,
    get_tenant_run,
    list_runs,
    list_runs_newer,
    public_run,
    refresh_poll,
    resume_run,
    stop_run,
    upstream_key,
)
from relay.vendors.base import Provider

#: A run-list cursor: "<score>:<run id>", the score a plain decimal as `repr(float)` writes it,
#: bounded so it is always finite. Also the cursor's `pattern` in /openapi.json.
CURSOR_PATTERN = r"^-?(?:[0-9]{1,20}(?:\.[0-9]{0,20})?|\.[0-9]{1,20})(?:[eE][-+]?[0-9]{1,2})?:"
_CURSOR = re.compile(CURSOR_PATTERN)


@dataclass(frozen=True)
class Started:
    """The run (its public shape) and whether this request made it (False: an existing run was
    returned, for the same Idempotency-Key and body or an upstream run already tracked)."""

    run: dict[str, Any]
    created: bool


@dataclass(frozen=True)
class RunPage:
    runs: list[dict[str, Any]]
    next_cursor: str | None  # older runs: pass it as `cursor`
    prev_cursor: str | None = None  # newer runs: pass it as `before`
    total: int = 0  # runs in the listing (of the filter), as indexed now
    first: int = 1  # the 1-based position of the first run shown in the listing
    #: run id -> {"total", "succeeded", "dead", "pending"} deliveries (with `summarize`)
    deliveries: dict[str, dict[str, int]] = field(default_factory=dict)


#: The relay's own states of a run (`state`), beside the vendor's `status`.
STATES = ("starting", "tracking", "completed", "start_failed", "tracking_failed", "stopped")
#: Vendor statuses that mean the job did what it was asked (Citedy `completed`, Autoposting
#: `completed` or `succeeded`); any other terminal status is an upstream failure of some kind.
SUCCEEDED = frozenset({"completed", "succeeded"})


def outcome(run: dict[str, Any]) -> str:
    """What happened to the run, in one word: `running` (starting or tracking), `succeeded`,
    the vendor's own word for a terminal status that is not a success (`failed`, `blocked`,
    `partial`, ...), `start_failed`, `tracking_failed` or `stopped`. The relay's `state` alone
    says `completed` for every run the vendor finished, however it finished."""
    state = run.get("state") or ""
    if state in ACTIVE_STATES:
        return "running"
    if state == "completed":
        status = run.get("status") or ""
        return "succeeded" if status in SUCCEEDED else status or "completed"
    return state


def _shown(run: dict[str, str]) -> dict[str, Any]:
    """The run as the API and the console show it: its public shape, its outcome and the input
    it was started with (None when tracked)."""
    out = public_run(run)
    out["outcome"] = outcome(out)
    out["input"] = loads(run.get("input"))
    return out


def check_delivery(delivery: str, status: str | None) -> None:
    """A `delivery` filter the listing has an index for."""
    if delivery not in keys.DELIVERY_OUTCOMES:
        raise Invalid(
            "delivery",
            f"delivery: expected one of {', '.join(keys.DELIVERY_OUTCOMES)} (runs with a "
            "delivery dead-lettered, or retrying)",
        )
    if status:
        raise Invalid("delivery", "delivery: cannot be combined with status; use one or the other")


def valid_cursor(cursor: str) -> bool:
    """Only a plain finite decimal, as the relay writes it: Redis refuses "nan", "1_0", "1 "."""
    return bool(_CURSOR.match(cursor)) and math.isfinite(float(cursor.partition(":")[0]))


def _provider(deps: Deps, name: str) -> Provider:
    if name not in deps.providers:
        raise Invalid(
            "provider", f"provider: unknown provider; expected one of {', '.join(deps.providers)}"
        )
    return deps.providers[name]


def _validated_input(provider: Provider, body: RunCreate) -> dict[str, Any] | None:
    if body.input is not None and body.upstream_run_id is not None:
        raise Invalid("input", "give either input (start) or upstream_run_id (track), not both")
    if body.input is None and body.upstream_run_id is None:
        raise Invalid("input", "input (start a run) or upstream_run_id (track one) is required")
    if provider.needs_agent_id and not body.agent_id:
        raise Invalid("agent_id", f"agent_id: required for {provider.name}")
    if not provider.needs_agent_id and body.agent_id:
        raise Invalid("agent_id", f"agent_id: not used by {provider.name}")
    if body.input is None:
        return None
    if not provider.can_start:
        raise Invalid(
            "input",
            f"input: {provider.name} runs cannot be started "
            "through the relay; track them with upstream_run_id",
        )
    try:
        return provider.validate_input(body.input)
    except ValidationError as exc:
        raise invalid_from(exc, "input.") from None


async def ensure_callback_secret(deps: Deps, tenant: str) -> None:
    sealed = seal(signing.new_secret(), deps.settings.relay_encryption_key)
    await deps.redis.set(keys.tenant_callback_secret(tenant), sealed, nx=True)


async def start(
    deps: Deps, tenant: str, body: RunCreate, idempotency_key: str | None = None
) -> Started:
    """Record a run with its first unit of work (a start or a poll) in one script."""
    provider = _provider(deps, body.provider)
    payload = _validated_input(provider, body)
    await ensure_room(deps)
    await connections.require(deps, tenant, provider.name)
    callback_url = None
    if body.callback_url is not None:
        callback_url = await checked_url(deps, body.callback_url, "callback_url")
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
        raise Invalid("Idempotency-Key", "Idempotency-Key must be 1-255 characters")
    r = deps.redis
    now = time.time()
    run_id = new_id("run")
    record: dict[str, str] = {
        "id": run_id,
        "tenant": tenant,
        "provider": provider.name,
        "agent_id": body.agent_id or "",
        "upstream_run_id": body.upstream_run_id or "",
        "state": STARTING if payload is not None else TRACKING,
        "status": "",
        "sequence": "0",
        "source": "start" if payload is not None else "track",
        "metadata": dumps(body.metadata or {}),
        "created_at": repr(now),
        "updated_at": repr(now),
        "poll_interval": "0",
        # Carried by the run so every script that ends it knows how long to keep it.
        "retention": repr(deps.settings.retention),
    }
    if payload is not None:
        record["input"] = dumps(payload)
    if tracing.ENABLED:  # the run's trace: this request's (relay/tracing.py)
        record.update(tracing.run_fields())
        tracing.note({"relay.run.id": run_id, "relay.tenant": tenant})
    callback_sub = None
    if callback_url:
        await ensure_callback_secret(deps, tenant)
        record["callback_url"] = callback_url
        record["callback_sub"] = new_id("sub")
        # Written with the run, in one step (relay/store/runs.py create_run).
        callback_sub = subs_store.new_sub_fields(
            sub_id=record["callback_sub"],
            tenant=tenant,
            url=callback_url,
            filter_={},
            description=f"callback of {run_id}",
            sealed_secret=None,
            now=now,
            run_id=run_id,
        )
    input_idempotency_key = (
        str(payload["idempotencyKey"]) if payload and payload.get("idempotencyKey") else None
    )
    created = await create_run(
        r,
        run=record,
        due_key=keys.DUE_START if payload is not None else keys.DUE_POLL,
        due_at=now,
        idempotency_key=idempotency_key,
        # Only an idempotency record keeps the hash (to tell a retry from a reuse): no key, no
        # need to serialise and hash the body.
        request_hash=body_hash(body.model_dump(mode="json"))
        if idempotency_key is not None or input_idempotency_key is not None
        else "",
        upstream_key=None
        if payload is not None
        else upstream_key(tenant, provider.name, body.agent_id or "", body.upstream_run_id or ""),
        callback_sub=callback_sub,
        max_active=deps.settings.max_active_runs,
        # The key the vendor sees is the tenant's at the relay too: one relay run per vendor run.
        input_idempotency_key=input_idempotency_key,
        pipe=deps.pipe,
    )
    if created.outcome == "quota":
        limit = deps.settings.max_active_runs
        raise QuotaExceeded("RELAY_MAX_ACTIVE_RUNS", limit, "active runs")
    if created.outcome == "conflict":
        raise Conflict(
            "idempotency_conflict",
            "this Idempotency-Key was used with a different body",
            "Idempotency-Key",
        )
    if created.outcome == "input_conflict":
        raise Conflict(
            "idempotency_conflict",
            "this input.idempotencyKey was used with a different body",
            "input.idempotencyKey",
        )
    if created.outcome == "created":
        # The script wrote exactly `record` (plus index bookkeeping the public shape leaves out),
        # so the answer is built from it: no second round trip to read back what was just sent.
        return Started(_shown(record), True)
    run = await get_tenant_run(r, tenant, created.run_id)
    if run is None:
        raise NotFound("run")
    await snapshots.resolve(r, [run])
    return Started(_shown(run), False)


async def _own(deps: Deps, tenant: str, run_id: str) -> dict[str, str]:
    run = await get_tenant_run(deps.redis, tenant, run_id)
    if run is None:
        raise NotFound("run")
    await snapshots.resolve(deps.redis, [run])
    return run


async def events(deps: Deps, run_id: str) -> list[dict[str, Any]]:
    """A run's events in order, each with every subscriber's delivery state (the API's shape)."""
    r = deps.redis
    ids = await r.lrange(keys.run_events(run_id), 0, -1)
    if not ids:
        return []
    pipe = r.pipeline(transaction=False)
    for evt in ids:
        pipe.hmget(keys.event(evt), ["id", "type", "sequence", "status", "created_at", "subs"])
    rows = [row for row in await pipe.execute() if row[0]]
    pipe = r.pipeline(transaction=False)
    shape: list[tuple[int, str]] = []
    for index, row in enumerate(rows):
        for sub in (row[5] or "").split(","):
            if sub:
                shape.append((index, sub))
                pipe.hgetall(keys.delivery(row[0], sub))
    states = await pipe.execute() if shape else []
    out = [
        {
            "id": row[0],
            "type": row[1],
            "sequence": int(row[2] or 0),
            "status": row[3],
            "created_at": float(row[4] or 0),
            "deliveries": [],
        }
        for row in rows
    ]
    for (index, sub), state in zip(shape, states, strict=True):
        out[index]["deliveries"].append(
            {
                "subscription_id": sub,
                "state": state.get("state"),
                "attempts": int(state.get("attempts") or 0),
                "last_status_code": int(state["last_code"]) if state.get("last_code") else None,
                "last_error": state.get("last_error") or None,
                "next_attempt_at": float(state["next_at"]) if state.get("next_at") else None,
            }
        )
    return out


async def get(deps: Deps, tenant: str, run_id: str) -> dict[str, Any]:
    """One run with its events and their deliveries."""
    run = await _own(deps, tenant, run_id)
    return {**_shown(run), "events": await events(deps, run["id"])}


async def page(
    deps: Deps,
    tenant: str,
    *,
    limit: int = 50,
    cursor: str | None = None,
    before: str | None = None,
    provider: str | None = None,
    status: str | None = None,
    delivery: str | None = None,
    known_provider: bool = False,
    summarize: bool = False,
) -> RunPage:
    """Newest first, `limit` (1-200) at a time; `cursor` is the previous page's `next_cursor`
    (older runs), `before` its `prev_cursor` (newer runs; given both, `before` is used). With
    `known_provider` an unknown provider is refused (the JSON API answers an empty list, as it
    always has); `summarize` adds each run's delivery counts (`delivery_summary`). Counts are
    ZCARD/ZCOUNT of the listing's index: O(log n), whatever the tenant's history. `delivery`
    (`dead` or `failing`) lists the runs with a delivery dead-lettered or retrying now, from an
    index the delivery scripts keep (relay/store/lua/includes/delivery_state.lua); with a
    provider, or alone, never with a status."""
    if not 1 <= limit <= 200:
        raise Invalid("limit", "limit: must be 1-200")
    if cursor is not None and not valid_cursor(cursor):
        raise Invalid("cursor", "cursor: malformed")
    if before is not None and not valid_cursor(before):
        raise Invalid("before", "before: malformed")
    if known_provider and provider and provider not in deps.providers:
        raise Invalid(
            "provider",
            f"provider: no provider is called {provider!r}; expected one of "
            f"{', '.join(deps.providers)}",
        )
    if delivery is not None:
        check_delivery(delivery, status)
    r = deps.redis
    if before is not None:
        found, newer = await list_runs_newer(
            r,
            tenant,
            limit=limit,
            before=before,
            provider=provider,
            status=status,
            delivery=delivery,
        )
        next_cursor: str | None = cursor_of(found[-1]) if found else before
        prev_cursor = cursor_of(found[0]) if newer and found else None
    else:
        found, next_cursor = await list_runs(
            r,
            tenant,
            limit=limit,
            cursor=cursor,
            provider=provider,
            status=status,
            delivery=delivery,
        )
        prev_cursor = cursor_of(found[0]) if cursor is not None and found else None
    total, newer_count = await count_runs(
        r, tenant, provider, status, cursor_of(found[0]) if found else "", delivery
    )
    await snapshots.resolve(r, found)
    summary = await delivery_summary(deps, [run["id"] for run in found]) if summarize else {}
    return RunPage(
        [_shown(run) for run in found], next_cursor, prev_cursor, total, newer_count + 1, summary
    )


@dataclass(frozen=True)
class Refreshed:
    run: dict[str, Any]
    #: 'scheduled' (polled now), or 'queued' behind a poll in flight (never two polls at once)
    outcome: str


async def refresh(deps: Deps, tenant: str, run_id: str) -> Refreshed:
    """Poll now (a run being tracked, or one that gave up: it is tracked again)."""
    run = await _own(deps, tenant, run_id)
    if run.get("state") == STARTING:
        # A start set aside after RELAY_POISON_AFTER failures comes back, due now; any other
        # start is queued already.
        back = await leases.put_back(deps.redis, keys.DUE_START, run["id"])
        run = await _own(deps, tenant, run_id)
        return Refreshed(public_run(run), "scheduled" if back else "queued")
    run = await resume_run(deps.redis, run, time.time())  # a tracking_failed run is tracked again
    await snapshots.resolve(deps.redis, [run])
    if run.get("state") != TRACKING:
        raise Conflict("not_tracking", f"the run is {run.get('state')}, not being polled")
    result = await refresh_poll(deps.redis, run["id"])
    if result == "not_tracking":  # stopped or ended since it was read
        raise Conflict("not_tracking", "the run is no longer being polled")
    return Refreshed(_shown(run), result)


async def stop(deps: Deps, tenant: str, run_id: str) -> None:
    """Stop tracking: no more polls or starts; what was recorded stays for RELAY_RETENTION
    after its deliveries settle (the retention clock starts here if they already have)."""
    run = await _own(deps, tenant, run_id)
    # One script, deciding from the run as it is then (this read may be stale by now).
    if not await stop_run(deps.redis, run["id"], time.time()):
        raise NotFound("run")


async def erase(deps: Deps, tenant: str, run_id: str) -> None:
    """Stop tracking and delete the run with everything about it now (a personal-data request):
    events and their bodies, snapshots, delivery records, pending deliveries, dead letters, its
    callback subscription, index entries. Only a tombstone of its upstream key stays, so a watch
    does not track it again. One script, so a poll in flight finds the run gone and records
    nothing (RECORD_EVENT answers 'gone')."""
    run = await _own(deps, tenant, run_id)
    if not await lifecycle.erase_run(deps.redis, run["id"], deps.settings.tombstone_ttl):
        raise NotFound("run")
