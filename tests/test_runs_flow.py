"""Runs from start to terminal against the simulators, with real workers: one event per status,
in sequence, delivered to a subscriber."""

from __future__ import annotations

import httpx

from tests.support.receiver import Receiver
from tests.support.stack import Stack, subscribe, unique, wait_for

CITEDY_PATH = ["queued", "signals_running", "contacts_running", "drafting_running", "completed"]


def test_started_citedy_run_emits_one_event_per_status(
    stack: Stack, receiver: Receiver, sim: httpx.Client
) -> None:
    hook = unique("flow")
    with stack.client("t1") as api:
        subscribe(api, receiver.url(hook), filter={"providers": ["citedy"]})
        run = api.post(
            "/v1/runs",
            json={
                "provider": "citedy",
                "input": {"domain": f"{hook}.example"},
                "metadata": {"crm_id": hook},
            },
        ).json()
        detail = wait_for(
            lambda: (d := api.get(f"/v1/runs/{run['id']}").json())["state"] == "completed" and d,
            what="run completed",
        )
    assert detail["status"] == "completed" and detail["upstream_run_id"]
    assert [e["status"] for e in detail["events"]] == CITEDY_PATH
    assert [e["sequence"] for e in detail["events"]] == [1, 2, 3, 4, 5]
    wait_for(lambda: len(receiver.got(hook)) == 5, what="five webhooks")
    bodies = receiver.events(hook)
    assert [b["data"]["run"]["status"] for b in bodies] == CITEDY_PATH
    assert [b["data"]["run"]["previous_status"] for b in bodies] == [None, *CITEDY_PATH[:-1]]
    assert all(b["data"]["run"]["metadata"] == {"crm_id": hook} for b in bodies)
    assert bodies[-1]["data"]["run"]["terminal"] is True
    assert bodies[-1]["data"]["upstream"]["result"]["runId"] == detail["upstream_run_id"]
    ids = [h.headers["webhook-id"] for h in receiver.got(hook)]
    assert ids == [e["id"] for e in detail["events"]]
    stats = sim.get("/_sim/stats").json()
    assert stats["charged_runs"] == 1 and stats["credits_charged_total"] == 40
