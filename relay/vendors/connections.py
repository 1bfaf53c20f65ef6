"""Which vendor credential serves a tenant's call, resolved at every vendor call (so a connection
put or rotated applies to the runs already in flight), and the metering of those calls.

- The tenant's own connection (`PUT /v1/connections/{provider}`, sealed in Redis) when it has one;
- else the operator's key from the environment, if RELAY_SHARED_CONNECTIONS allows (then the
  vendor idempotency key sent upstream is derived from the tenant and the client's key, so two
  tenants on one vendor account cannot collide);
- else no key: the call is refused before it leaves, as the vendor's 401 would be.

Workers call `provider_for` where they used `ctx.providers[name]` and reach the vendor only
through the `TenantVendor` it returns (composition: the vendor's client is not changed). The poll
job passes its worker's `VendorCache` (relay/vendors/vendor_cache.py): a connection changed
through the API then applies to runs in flight within its TTL (1 s) instead of at their next
poll, and a poll the vendor refuses (401/403, or 404: the run may be another account's) drops the
pair's entry so the next poll reads the connection again. Starts and watches read it every
time (a start charges the account it is sent with)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar

import httpx

from relay.config import Settings
from relay.secret_box import unseal
from relay.store import keys
from relay.store.autopipe import AutoPipeline
from relay.tenancy import usage
from relay.vendors.base import NotFound, Observed, Provider, RunsPage, Started, Unauthorized
from relay.vendors.vendor_cache import VendorCache

SEALED = "sealed"
T = TypeVar("T")


class HasVendors(Protocol):
    pipe: AutoPipeline
    settings: Settings
    providers: dict[str, Provider]


def scoped_idempotency_key(tenant: str, key: str) -> str:
    """The key a tenant on the shared account sends upstream: stable, per tenant, 8-128 chars."""
    return "t-" + hashlib.sha256(f"{tenant}\x1f{key}".encode()).hexdigest()[:40]


class TenantVendor:
    """A vendor client bound to one call on a tenant's behalf: the credential that serves it, and
    every request counted in the tenant's usage (on the shared account, start idempotency keys
    scoped to the tenant). The workers call the vendor only through it."""

    def __init__(
        self,
        provider: Provider,
        tenant: str,
        pipe: AutoPipeline,
        days: int,
        scope: bool,
        cache: VendorCache[TenantVendor] | None = None,
    ) -> None:
        self.provider = provider
        self.tenant = tenant
        self._pipe = pipe
        self._days = days
        self._scope_idempotency = scope
        self._cache = cache

    @property
    def name(self) -> str:
        return self.provider.name

    @property
    def credential(self) -> str:
        return self.provider.credential

    def is_terminal(self, status: str) -> bool:
        return self.provider.is_terminal(status)

    def changed_at(self, snapshot: dict[str, Any]) -> float | None:
        return self.provider.changed_at(snapshot)

    def follows(self, previous: str, status: str) -> bool:
        return self.provider.follows(previous, status)

    @property
    def usage(self) -> tuple[str, int]:
        """The tenant's usage counters of today and their ttl, for a script that counts a request
        in the same step as its own writes (relay/store/lua/held_slots.lua)."""
        return usage.key(self.tenant), usage.ttl(self._days)

    async def _count(self, **counts: int) -> None:
        await self._pipe.execute(*usage.commands(self.tenant, counts, self._days))

    async def _counted(self, call: Awaitable[T], counted: bool = False) -> T:
        """`call` (one vendor request) with the request counted beside it: the count's round
        trip overlaps the vendor's answer instead of adding to it. `counted`: the caller's own
        script counted it already (a poll or a start, with its slot: workers/ahead.py)."""
        counting = None if counted else asyncio.ensure_future(self._count(vendor_requests=1))
        try:
            result = await call
        except Exception as exc:
            if self._cache is not None and isinstance(exc, Unauthorized | NotFound):
                self._cache.forget(self.tenant, self.name)  # maybe the key: read it again
            if counting is not None:
                await counting  # the request was made (a vendor error is an answer): it counts
            raise
        except BaseException:
            if counting is not None:
                counting.cancel()  # cancelled (or the process is going): do not wait on Redis
            raise
        if counting is not None:
            await counting
        return result

    async def start(
        self,
        client: httpx.AsyncClient,
        payload: dict[str, Any],
        idempotency_key: str,
        counted: bool = False,
    ) -> Started:
        if self._scope_idempotency:
            given = payload.get("idempotencyKey")
            if given:
                payload = {**payload, "idempotencyKey": scoped_idempotency_key(self.tenant, given)}
        started = await self._counted(
            self.provider.start(client, payload, idempotency_key), counted
        )
        if not started.idempotent:
            credits = started.snapshot.get("credits_charged")
            counts = {"runs_started": 1, "credits": credits if isinstance(credits, int) else 0}
            # Queued, not awaited: it goes out with the caller's next round trip (the start's
            # record), not in one of its own after the vendor's answer (bench/polling.py
            # --start). It is sent whatever the caller does next. A failure of that exchange
            # fails the commands beside it (the record), and the start repeated then is an
            # idempotent replay, which counts nothing: as when this count was awaited.
            self._pipe.submit(*usage.commands(self.tenant, counts, self._days))
        return started

    async def fetch(
        self,
        client: httpx.AsyncClient,
        agent_id: str,
        upstream_run_id: str,
        *,
        counted: bool = False,
    ) -> Observed:
        return await self._counted(self.provider.fetch(client, agent_id, upstream_run_id), counted)

    async def list_runs(
        self, client: httpx.AsyncClient, agent_id: str, offset: int = 0, limit: int = 100
    ) -> RunsPage:
        return await self._counted(self.provider.list_runs(client, agent_id, offset, limit))


async def provider_for(
    ctx: HasVendors, tenant: str, name: str, cache: VendorCache[TenantVendor] | None = None
) -> TenantVendor:
    """The vendor client for one call on `tenant`'s behalf (one HGET, auto-pipelined); with
    `cache`, the one read less than its TTL ago when there is one."""
    if cache is not None and (held := cache.get(tenant, name)) is not None:
        return held
    base = ctx.providers[name]
    (sealed,) = await ctx.pipe.execute(("HGET", keys.connection(tenant, name), SEALED))
    if sealed:
        client = base.with_key(unseal(sealed, ctx.settings.relay_encryption_key))
    elif ctx.settings.shared_connections:
        client = base
    else:
        client = base.with_key(None)
    vendor = TenantVendor(client, tenant, ctx.pipe, ctx.settings.usage_days, not sealed, cache)
    if cache is not None:
        cache.put(tenant, name, vendor)
    return vendor
