"""Events recorded while a subscription is disabled wait, parked, in order, and flow when it is
enabled again; deleting it drops them (DESIGN.md invariant 2). Real Valkey, real workers, the
Citedy simulator and the recording receiver."""

from __future__ import annotations

import time

import httpx
import redis

from relay.store import keys
from tests.support.receiver import Receiver
from tests.support.stack import Stack, subscribe, unique, wait_for

CITEDY_PATH = ["queued", "signals_running", "contacts_running", "drafting_running", "completed"]


def _completed_run(api: httpx.Client, name: str) -> dict:
    run = api.post(
        "/v1/runs", json={"provider": "citedy", "input": {"domain": f"{name}.example"}}
    ).json()
    return wait_for(
        lambda: (d := api.get(f"/v1/runs/{run['id']}").json())["state"] == "completed" and d,
        what="run completed",
    )


def _delivered(receiver: Receiver, hook: str, run_id: str) -> list[dict]:
    return [
        h.json
        for h in receiver.got(hook)
        if h.succeeded and h.json["data"]["run"]["id"] == run_id
    ]


def _parked(rdb: redis.Redis, sub_id: str, run_id: str, events: int) -> None:
    """Every event is on the lane, in order, and the lane is not scheduled."""
    lane = rdb.lrange(keys.lane(sub_id, run_id), 0, -1)
    assert len(lane) == events, lane
    assert rdb.zscore(keys.DUE_DELIVER, keys.pair(sub_id, run_id)) is None
    assert rdb.sismember(keys.sub_pairs(sub_id), run_id)


def _flows_in_order(
    api: httpx.Client, receiver: Receiver, hook: str, sub_id: str, detail: dict
) -> None:
    enabled = api.patch(f"/v1/subscriptions/{sub_id}", json={"enabled": True})
    assert enabled.status_code == 200 and enabled.json()["enabled"] is True
    got = wait_for(
        lambda: (b := _delivered(receiver, hook, detail["id"])) and len(b) == 5 and b,
        what="the parked events delivered",
    )
    assert [b["data"]["run"]["status"] for b in got] == CITEDY_PATH
    assert [b["data"]["run"]["sequence"] for b in got] == [1, 2, 3, 4, 5]
    ids = [h.headers["webhook-id"] for h in receiver.got(hook) if h.succeeded]
    assert ids == [e["id"] for e in detail["events"]]


def test_events_recorded_while_disabled_wait_and_flow_on_enable(
    stack: Stack, receiver: Receiver, rdb: redis.Redis, sim: httpx.Client
) -> None:
    hook = unique("parked")
    with stack.client("t3") as api:
        sub = subscribe(api, receiver.url(hook), filter={"providers": ["citedy"]})
        off = api.patch(f"/v1/subscriptions/{sub['id']}", json={"enabled": False})
        assert off.json()["enabled"] is False
        detail = _completed_run(api, hook)
        time.sleep(1.0)  # time for a (wrong) delivery to happen
        assert receiver.got(hook) == []
        _parked(rdb, sub["id"], detail["id"], 5)
        # The run's page lists the subscriber's deliveries as waiting (pending, no attempt yet).
        shown = [
            d
            for e in api.get(f"/v1/runs/{detail['id']}").json()["events"]
            for d in e["deliveries"]
            if d["subscription_id"] == sub["id"]
        ]
        assert [(d["state"], d["attempts"]) for d in shown] == [("pending", 0)] * 5
        _flows_in_order(api, receiver, hook, sub["id"], detail)
    wait_for(lambda: not rdb.exists(keys.lane(sub["id"], detail["id"])), what="lane drained")


def test_events_after_a_410_wait_and_flow_on_enable(
    stack: Stack, receiver: Receiver, rdb: redis.Redis, sim: httpx.Client
) -> None:
    hook = unique("gone")
    receiver.plan(hook, 410)
    with stack.client("t3") as api:
        sub = subscribe(api, receiver.url(hook), filter={"providers": ["citedy"]})
        detail = _completed_run(api, hook)
        wait_for(
            lambda: api.get(f"/v1/subscriptions/{sub['id']}").json()["enabled"] is False,
            what="disabled by the 410",
        )
        time.sleep(1.0)
        assert [h.answer for h in receiver.got(hook)] == [410]  # one try, then parked
        _parked(rdb, sub["id"], detail["id"], 5)
        _flows_in_order(api, receiver, hook, sub["id"], detail)


def test_deleting_a_disabled_subscription_drops_its_parked_events(
    stack: Stack, receiver: Receiver, rdb: redis.Redis, sim: httpx.Client
) -> None:
    hook = unique("dropped")
    receiver.plan(hook, default=500)
    with stack.client("t3") as api:
        sub = subscribe(api, receiver.url(hook), filter={"providers": ["citedy"]})
        sub_id = sub["id"]
        first = _completed_run(api, hook)
        # The first event fails its 4 tries and is dead-lettered, then the subscription is
        # disabled: dead letters, maybe a retrying head, and parked events of a second run.
        wait_for(lambda: rdb.zcard(keys.sub_dead(sub_id)) >= 1, what="a dead letter")
        api.patch(f"/v1/subscriptions/{sub_id}", json={"enabled": False}).raise_for_status()
        second = _completed_run(api, hook + "b")
        _parked(rdb, sub_id, second["id"], 5)
        lane_events = {
            run["id"]: rdb.lrange(keys.lane(sub_id, run["id"]), 0, -1) for run in (first, second)
        }
        dead = [m.partition("|")[0] for m in rdb.zrange(keys.sub_dead(sub_id), 0, -1)]
        lane_events[first["id"]] += dead
        assert all(rdb.exists(keys.delivery(e, sub_id)) for e in lane_events[first["id"]])
        assert api.delete(f"/v1/subscriptions/{sub_id}").status_code == 204
        # It leaves the API at once; what was queued for it goes in the background, in batches
        # (workers/chores.py), and with it the runs' counts of waiting deliveries.
        assert api.get(f"/v1/subscriptions/{sub_id}").status_code == 404
        assert sub_id not in [s["id"] for s in api.get("/v1/subscriptions").json()["data"]]

        def left() -> list[str]:
            found = rdb.scan_iter(match=f"relay:*{sub_id}*")
            return [k for k in found if not k.endswith(":attempts")]

        wait_for(lambda: left() == [], timeout=10, what="the purge of the subscription")
        assert not [m for m in rdb.zrange(keys.DUE_CHORES, 0, -1) if sub_id in m]
        for run in (first, second):
            assert int(rdb.hget(keys.run(run["id"]), "pending") or 0) == 0
        for run_id, events in lane_events.items():
            assert not rdb.exists(keys.lane(sub_id, run_id))
            for event_id in events:
                assert not rdb.exists(keys.delivery(event_id, sub_id))
        members = rdb.zrange(keys.DUE_DELIVER, 0, -1)
        assert not [m for m in members if m.startswith(sub_id + "|")]
        # The attempt log stays for a while, then expires.
        assert 0 < rdb.ttl(keys.sub_attempts(sub_id)) <= 7 * 86400
        # Nothing is sent for it afterwards, and a run recorded now does not bring keys back.
        sent = len(receiver.got(hook))
        third = _completed_run(api, hook + "c")
        time.sleep(0.5)
    assert len(receiver.got(hook)) == sent
    assert not rdb.exists(keys.lane(sub_id, third["id"]), keys.sub_pairs(sub_id))
