"""One relay run per (tenant, vendor run) (issue 24, High): a client's `input.idempotencyKey` is
an idempotency key at the relay too, and a start the vendor resolves to a run the tenant already
tracks joins that run, so every subscriber and callback gets every status, in order, with no gap
in `sequence`. End to end: the real ingress, workers, simulator and receiver."""

from __future__ import annotations

import httpx
import redis

from relay.store import keys
from tests.support.receiver import Receiver
from tests.support.stack import Stack, subscribe, unique, wait_for

CITEDY_PATH = ["queued", "signals_running", "contacts_running", "drafting_running", "completed"]


def test_input_idempotency_key_is_a_relay_idempotency_key(stack: Stack) -> None:
    key = unique("input-key-")
    body = {"provider": "citedy", "input": {"domain": f"{key}.example", "idempotencyKey": key}}
    with stack.client("t1") as api:
        first = api.post("/v1/runs", json=body)
        assert first.status_code == 202, first.text
        again = api.post("/v1/runs", json=body)
        assert again.status_code == 200, again.text
        assert again.json()["id"] == first.json()["id"]
        other = {**body, "input": {"domain": f"other-{key}.example", "idempotencyKey": key}}
        conflict = api.post("/v1/runs", json=other)
        assert conflict.status_code == 409, conflict.text
        assert conflict.json()["error"] == "idempotency_conflict"
        assert conflict.json()["field"] == "input.idempotencyKey"
        # Scoped to the tenant: another tenant's same key is its own run.
        with stack.client("t2") as api2:
            theirs = api2.post("/v1/runs", json=body)
            assert theirs.status_code == 202 and theirs.json()["id"] != first.json()["id"]


def _statuses(receiver: Receiver, hook: str) -> list[tuple[str, int]]:
    return [
        (h.json["data"]["run"]["status"], h.json["data"]["run"]["sequence"])
        for h in receiver.got(hook)
        if h.succeeded
    ]


def test_a_start_the_vendor_resolves_to_a_tracked_run_joins_it(
    stack: Stack, receiver: Receiver, rdb: redis.Redis, sim: httpx.Client
) -> None:
    key = unique("join-key-")
    hook_sub, hook_a, hook_b = unique("join-sub"), unique("join-a"), unique("join-b")
    body = {"provider": "citedy", "input": {"domain": f"{key}.example", "idempotencyKey": key}}
    with stack.client("t1") as api:
        subscribe(api, receiver.url(hook_sub), filter={"providers": ["citedy"]})
        run_a = api.post("/v1/runs", json={**body, "callback_url": receiver.url(hook_a)}).json()
        wait_for(
            lambda: len(api.get(f"/v1/runs/{run_a['id']}").json()["events"]) >= 2,
            what="run A under way",
        )
        # The relay's record of the key has gone (its 24 h passed); the vendor still holds it.
        for idem in rdb.scan_iter(match=f"{keys.P}idem:t1:*"):
            if key in idem:
                rdb.delete(idem)
        second = api.post("/v1/runs", json={**body, "callback_url": receiver.url(hook_b)})
        assert second.status_code == 202, second.text
        run_b = second.json()
        assert run_b["id"] != run_a["id"]
        joined = wait_for(
            lambda: (d := api.get(f"/v1/runs/{run_b['id']}").json())["state"] == "joined" and d,
            what="run B joined run A",
        )
        assert joined["joined_run_id"] == run_a["id"]
        done = wait_for(
            lambda: (d := api.get(f"/v1/runs/{run_a['id']}").json())["state"] == "completed" and d,
            what="run A completed",
        )
        assert [e["status"] for e in done["events"]] == CITEDY_PATH
        assert [e["sequence"] for e in done["events"]] == [1, 2, 3, 4, 5]
        assert api.get(f"/v1/runs/{run_b['id']}").json()["events"] == []
    want = list(zip(CITEDY_PATH, [1, 2, 3, 4, 5], strict=True))
    for hook in (hook_sub, hook_a, hook_b):
        wait_for(lambda h=hook: len(_statuses(receiver, h)) >= 5, what=f"five webhooks to {hook}")
        assert _statuses(receiver, hook) == want, hook
        assert {h.json["data"]["run"]["id"] for h in receiver.got(hook)} == {run_a["id"]}
    assert sim.get("/_sim/stats").json()["charged_runs"] == 1
