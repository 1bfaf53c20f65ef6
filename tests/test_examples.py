"""The examples in examples/ run against the real stack: the Starlette receiver (verifies with
`standardwebhooks`, processes each `webhook-id` once, a recovered older one included) and the
pull consumer (a cursor loop that goes on where it stopped after a restart)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx

from examples import pull_consumer
from examples import receiver as example_receiver
from tests.support.servers import free_port, serve_in_thread
from tests.support.stack import TENANT_KEYS, Stack, subscribe, unique, wait_for
from tests.test_pull import tail

PATH = ["queued", "signals_running", "contacts_running", "drafting_running", "completed"]


def _start(api: httpx.Client) -> str:
    response = api.post(
        "/v1/runs", json={"provider": "citedy", "input": {"domain": f"{unique('ex')}.example"}}
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _attempts(api: httpx.Client, sub_id: str, event_id: str) -> list[dict[str, Any]]:
    """The subscription's attempt log for one event, newest first."""
    answer = api.get(f"/v1/subscriptions/{sub_id}/deliveries", params={"event_id": event_id})
    rows: list[dict[str, Any]] = answer.json()["data"]
    return rows


def test_example_receiver_verifies_dedupes_and_checks_sequence(
    stack: Stack, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhooks"
    handled: list[dict[str, Any]] = []
    with stack.client() as api:
        sub = subscribe(api, url)
        app = example_receiver.create_app(sub["secret"], str(tmp_path / "r.db"), handled.append)
        with serve_in_thread(app, port=port):
            run_id = _start(api)
            wait_for(lambda: len(handled) >= 5, timeout=30, what="5 events handled")
            mine = [e for e in handled if e["data"]["run"]["id"] == run_id]
            assert [e["data"]["run"]["status"] for e in mine] == PATH
            assert [e["data"]["run"]["sequence"] for e in mine] == [1, 2, 3, 4, 5]

            # The relay sends one again (a redelivery): answered 2xx, not processed twice.
            events = api.get(f"/v1/runs/{run_id}").json()["events"]
            again = api.post(f"/v1/events/{events[1]['id']}/redeliver")
            assert again.status_code == 202
            wait_for(
                lambda: len(_attempts(api, sub["id"], events[1]["id"])) >= 2,
                what="the redelivery attempt",
            )
            attempts = _attempts(api, sub["id"], events[1]["id"])
            assert attempts[0]["outcome"] == "succeeded"
            assert '"duplicate"' in attempts[0]["response_excerpt"]
            assert len([e for e in handled if e["data"]["run"]["id"] == run_id]) == 5

            # A forged body is refused (400), and nothing is processed.
            forged = httpx.post(
                url,
                content=b'{"type":"ping"}',
                headers={
                    "webhook-id": "evt_forged",
                    "webhook-timestamp": str(int(time.time())),
                    "webhook-signature": "v1,bm9wZQ==",
                },
            )
            assert forged.status_code == 400
    assert len([e for e in handled if e["data"]["run"]["id"] == run_id]) == 5
    # Only the webhook-id decides: an older sequence under an id never processed is processed
    # (late), and the run's highest sequence stays where it was.
    store = app.state.store
    late = {"type": "run.status_changed", "data": {"run": {"id": run_id, "sequence": 2}}}
    assert store.process_once("evt_other", late, handled.append) == "processed_late"
    assert handled[-1] is late
    assert store.latest(run_id) == 5
    assert store.process_once("evt_other", late, handled.append) == "duplicate"


def test_example_receiver_processes_a_recovered_event_with_a_lower_sequence(
    stack: Stack, tmp_path: Path
) -> None:
    """A delivery the receiver failed is dead-lettered, the run's later events go on, and
    `recover` sends the failed one again, after them: the example must process it (it was never
    processed), not drop it as stale for its lower sequence."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhooks"
    handled: list[dict[str, Any]] = []
    failing = {"on": True}

    def handle(event: dict[str, Any]) -> None:
        run = event["data"]["run"]
        if failing["on"] and run["sequence"] == 2:
            raise RuntimeError("the receiver's own work failed")  # answered 500: retried
        handled.append(event)

    with stack.client() as api:
        sub = subscribe(api, url)
        app = example_receiver.create_app(sub["secret"], str(tmp_path / "r.db"), handle)
        with serve_in_thread(app, port=port):
            run_id = _start(api)

            def sequences() -> list[int]:
                runs = [e["data"]["run"] for e in handled]
                return [r["sequence"] for r in runs if r["id"] == run_id]

            # sequence 2 fails every retry (0.2, 0.4, 0.8 s here) and is dead-lettered; the lane
            # goes on with 3, 4, 5
            wait_for(lambda: sequences() == [1, 3, 4, 5], timeout=30, what="1, 3, 4, 5")
            dead = api.get(f"/v1/runs/{run_id}").json()["events"][1]
            assert dead["status"] == "signals_running"
            failing["on"] = False
            recovered = api.post(f"/v1/subscriptions/{sub['id']}/recover", json={"since": 0})
            assert recovered.status_code == 202, recovered.text
            assert recovered.json()["recovered"] == 1
            wait_for(lambda: sequences() == [1, 3, 4, 5, 2], timeout=30, what="the recovered 2")
            # The receiver has handled it; the worker logs the attempt once the answer is back.
            wait_for(
                lambda: _attempts(api, sub["id"], dead["id"])[0]["outcome"] != "dead",
                timeout=10,
                what="the attempt logged",
            )
            rows = _attempts(api, sub["id"], dead["id"])
            assert rows[0]["outcome"] == "succeeded"
            assert '"processed_late"' in rows[0]["response_excerpt"]
            assert any(a["status_code"] == 500 for a in rows[1:])
    assert app.state.store.latest(run_id) == 5


def test_pull_consumer_survives_a_restart(stack: Stack, tmp_path: Path) -> None:
    cursor_file = tmp_path / "cursor.txt"
    with stack.client("t2") as api:
        # start from the tenant's present (a fresh consumer would read all retained history)
        cursor = tail(api)
        cursor_file.write_text(cursor)
        run_id = _start(api)

    seen: list[dict[str, Any]] = []

    def mine() -> list[str]:
        return [e["data"]["run"]["status"] for e in seen if e["data"]["run"]["id"] == run_id]

    def run(stop_at: int) -> None:
        pull_consumer.consume(
            stack.api_url,
            TENANT_KEYS["t2"],
            cursor_file,
            seen.append,
            wait=2,
            limit=2,
            stop=lambda: len(mine()) >= stop_at,
        )

    # First life: stops (between pages) after two of the run's events; the cursor is saved.
    first = threading.Thread(target=run, args=(2,))
    first.start()
    first.join(timeout=30)
    assert not first.is_alive()
    saved = cursor_file.read_text()
    assert saved != cursor
    handled_first = len(mine())
    # Second life, a new process in real life: goes on from the file, to the end of the run.
    second = threading.Thread(target=run, args=(5,))
    second.start()
    second.join(timeout=40)
    assert not second.is_alive()
    assert 2 <= handled_first < 5
    assert mine() == PATH  # every event once, in order, across the restart
    ids = [e["id"] for e in seen]
    assert len(ids) == len(set(ids))
