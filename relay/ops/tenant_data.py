"""Erase a whole tenant's data (the operator's `relay erase-tenant TENANT [--dry-run]`): every
run with everything about it (through the same ERASE_RUN script as `POST /v1/runs/{id}/erase`),
every subscription with its lanes and attempt log, every watch, the notices, idempotency keys,
tombstones, the usage counts and the tenant's own keys (connections). The API keys themselves
live in configuration (or the tenants' admin API) and are the operator's to revoke."""

from __future__ import annotations

from dataclasses import dataclass

from relay.ops import watches
from relay.ops.deps import Deps
from relay.store import keys, lifecycle, slots
from relay.store import subscriptions as subs_store

#: Runs erased per page of the tenant's index.
PAGE = 200


@dataclass(frozen=True)
class TenantData:
    """What a tenant holds (a dry run's answer), or what was erased."""

    runs: int
    subscriptions: int
    watches: int
    other_keys: int  # notices, secrets, idempotency keys, tombstones, indexes, usage


def _patterns(tenant: str) -> list[str]:
    return [
        f"{keys.P}tenant:{tenant}:*",
        f"{keys.P}idem:{tenant}:*",
        f"{keys.P}upstream:{tenant}:*",
        f"{keys.P}usage:{tenant}:*",
        # Its runs' reserved vendor slots (relay/store/slots.py; they would expire within a minute
        # of
        # their last slot anyway).
        slots.reservations(f"{keys.P}budget:*", tenant),
    ]


async def _other_keys(deps: Deps, tenant: str) -> list[str]:
    found: list[str] = []
    for pattern in _patterns(tenant):
        found += [k async for k in deps.redis.scan_iter(match=pattern, count=1000)]
    return found


async def erase_tenant(deps: Deps, tenant: str, *, dry_run: bool) -> TenantData:
    """Count (dry run) or erase everything of `tenant`."""
    r = deps.redis
    sub_ids = sorted(await r.smembers(keys.tenant_subs(tenant)))
    watch_ids = sorted(await r.smembers(keys.tenant_watches(tenant)))
    if dry_run:
        other = await _other_keys(deps, tenant)
        return TenantData(
            await r.zcard(keys.tenant_runs(tenant)), len(sub_ids), len(watch_ids), len(other)
        )
    # Watches first: a listing in flight then finds its watch gone and tracks no new run that
    # would outlive the erase.
    for watch_id in watch_ids:
        await watches.remove(deps, tenant, watch_id)
    runs = 0
    # A page of runs at a time (each erase takes its run out of the index), so no single Redis
    # call reads the whole tenant.
    while page := await r.zrange(keys.tenant_runs(tenant), 0, PAGE - 1):
        for run_id in page:
            if await lifecycle.erase_run(r, run_id, deps.settings.tombstone_ttl):
                runs += 1
            else:  # an index entry whose run is gone already
                await r.zrem(keys.tenant_runs(tenant), run_id)
    for sub_id in sub_ids:
        sub = await subs_store.get_sub(r, sub_id)
        if sub is not None:
            await subs_store.delete_sub(r, sub)
        await r.delete(keys.sub_attempts(sub_id))
    other = await _other_keys(deps, tenant)
    # Its reserved vendor slots go with its count on each line, in one script per line, so no
    # ghost count is left to block other tenants' swaps (lua/reserve_slot.lua).
    held = [k for k in other if k.endswith(slots.HELD + tenant)]
    for key in held:
        await slots.drop(r, key, tenant)
    rest = [k for k in other if k not in set(held)]
    for start in range(0, len(rest), 500):
        await r.delete(*rest[start : start + 500])
    return TenantData(runs, len(sub_ids), len(watch_ids), len(other))
