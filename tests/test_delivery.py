"""Delivery: signed, retried, ordered webhooks, and what happens when subscribers misbehave."""

from __future__ import annotations

import time
from typing import Any

import httpx
import standardwebhooks
from svix.webhooks import Webhook as SvixWebhook

from tests.support.receiver import Hit, Receiver
from tests.support.servers import free_port, serve_in_thread
from tests.support.stack import Stack, subscribe, unique, wait_for

PATH = ["queued", "signals_running", "contacts_running", "drafting_running", "completed"]


def _start(api: httpx.Client, **extra: Any) -> dict[str, Any]:
    response = api.post(
        "/v1/runs",
        json={"provider": "citedy", "input": {"domain": f"{unique('d')}.example"}, **extra},
    )
    assert response.status_code == 202, response.text
    body: dict[str, Any] = response.json()
    return body


def _delivered(hits: list[Hit]) -> list[str]:
    """Statuses in arrival order of the attempts the receiver answered 2xx (recorded by plan)."""
    return [h.json["data"]["run"]["status"] for h in hits]


def _verify_all(hits: list[Hit], *secrets: str) -> None:
    for hit in hits:
        headers = {k: v for k, v in hit.headers.items() if k.startswith("webhook-")}
        for secret in secrets:
            standardwebhooks.Webhook(secret).verify(hit.body, headers)
            SvixWebhook(secret).verify(hit.body, headers)


def test_receiver_failing_then_recovering_gets_every_event_once_in_order(
    stack: Stack, receiver: Receiver
) -> None:
    hook = unique("flaky")
    receiver.plan(hook, 500, 500, 503, default=204)
    with stack.client() as api:
        sub = subscribe(api, receiver.url(hook))
        run = _start(api)
        wait_for(lambda: api.get(f"/v1/runs/{run['id']}").json()["state"] == "completed")
        wait_for(lambda: len(receiver.got(hook)) >= 8, what="3 failures + 5 deliveries")
        attempts = api.get(f"/v1/subscriptions/{sub['id']}/deliveries").json()["data"]
    hits = receiver.got(hook)
    assert len(hits) == 8
    ok = hits[3:]
    assert _delivered(ok) == PATH
    # the three failures were all the first event, retried with the same id and body
    assert len({h.headers["webhook-id"] for h in hits[:4]}) == 1
    assert len({h.headers["webhook-id"] for h in ok}) == 5
    _verify_all(hits, sub["secret"])
    outcomes = [a["outcome"] for a in reversed(attempts)]
    assert outcomes[:4] == ["retrying", "retrying", "retrying", "succeeded"]
    assert [a["status_code"] for a in reversed(attempts)][:4] == [500, 500, 503, 204]
    # Latency is measured per attempt: a real figure for each (the 500s answer at once, no
    # attempt took anywhere near the 2 s timeout).
    assert all(0 < a["latency_ms"] < 2000 for a in attempts), [a["latency_ms"] for a in attempts]


def test_receiver_down_for_a_while_gets_everything_after_it_returns(stack: Stack) -> None:
    port = free_port()
    late = Receiver()
    with stack.client() as api:
        sub = subscribe(api, f"http://127.0.0.1:{port}/hook/late")
        run = _start(api)
        wait_for(
            lambda: any(
                "connection failed" in (a["error"] or "")
                for a in api.get(f"/v1/subscriptions/{sub['id']}/deliveries").json()["data"]
            ),
            what="refused attempt",
        )
        with serve_in_thread(late.app(), port=port) as url:
            late.base_url = url
            wait_for(lambda: len(late.got("late")) == 5, timeout=30, what="all five after return")
            time.sleep(0.5)
            hits = late.got("late")
        detail = api.get(f"/v1/runs/{run['id']}").json()
    assert _delivered(hits) == PATH
    first = detail["events"][0]["deliveries"][0]
    assert first["state"] == "succeeded" and first["attempts"] >= 2


def test_410_disables_the_subscription_and_reenabling_resumes(
    stack: Stack, receiver: Receiver
) -> None:
    hook = unique("gone")
    receiver.plan(hook, 410, default=204)
    with stack.client() as api:
        sub = subscribe(api, receiver.url(hook))
        run = _start(api)
        wait_for(
            lambda: api.get(f"/v1/subscriptions/{sub['id']}").json()["enabled"] is False,
            what="disabled by 410",
        )
        wait_for(lambda: api.get(f"/v1/runs/{run['id']}").json()["state"] == "completed")
        time.sleep(0.5)
        assert len(receiver.got(hook)) == 1  # nothing is sent to a disabled subscription
        state = api.get(f"/v1/subscriptions/{sub['id']}").json()
        assert "410" in state["disabled_reason"]
        assert (
            api.patch(f"/v1/subscriptions/{sub['id']}", json={"enabled": True}).status_code == 200
        )
        wait_for(lambda: len(receiver.got(hook)) >= 6, what="resumed delivery")
        time.sleep(0.5)
    # the event that got 410 is delivered on re-enable, then the ones recorded while disabled
    # (they waited, parked), in order
    assert _delivered(receiver.got(hook)[1:]) == [
        "queued",
        "signals_running",
        "contacts_running",
        "drafting_running",
        "completed",
    ]


def test_hanging_receiver_times_out_without_blocking_others(
    stack: Stack, receiver: Receiver
) -> None:
    slow, fast = unique("hang"), unique("fast")
    receiver.plan(slow, default=("hang", 5))
    with stack.client() as api:
        subscribe(api, receiver.url(slow))
        subscribe(api, receiver.url(fast))
        started = time.time()
        _start(api)
        wait_for(lambda: len(receiver.got(fast)) == 5, what="fast subscriber served")
        fast_done = time.time() - started
        wait_for(lambda: len(receiver.got(slow)) >= 2, timeout=15, what="hang timed out, retried")
    # Five statuses at 0.5 s steps. Had the hanging lane held the pump, each of its 2 s timeouts
    # would have held the fast subscriber too: 4 tries of the first event alone are 8 s.
    assert fast_done < 7.0
    assert _delivered(receiver.got(slow))[:2] == ["queued", "queued"]
    assert all(h.answer == ("hang", 5) for h in receiver.got(slow)), "the fault fired"


def test_dead_letter_then_recover(stack: Stack, receiver: Receiver) -> None:
    hook = unique("dead")
    receiver.plan(hook, default=500)
    with stack.client() as api:
        sub = subscribe(api, receiver.url(hook))
        run = _start(api)
        wait_for(lambda: api.get(f"/v1/runs/{run['id']}").json()["state"] == "completed")

        def all_dead() -> bool:
            events = api.get(f"/v1/runs/{run['id']}").json()["events"]
            return all(e["deliveries"][0]["state"] == "dead" for e in events)

        wait_for(all_dead, timeout=40, what="every delivery dead-lettered")
        hits = receiver.got(hook)
        assert len(hits) == 5 * 4  # 1 try + 3 retries each
        # ordered even while failing: no later status before the earlier was dead-lettered
        seen = [h.json["data"]["run"]["sequence"] for h in hits]
        assert seen == sorted(seen)
        receiver.plan(hook, default=204)
        since = time.time() - 120
        recovered = api.post(f"/v1/subscriptions/{sub['id']}/recover", json={"since": since})
        assert recovered.status_code == 202 and recovered.json()["recovered"] == 5
        wait_for(lambda: len(receiver.got(hook)) == 25, what="recovered deliveries")
        wait_for(
            lambda: all(
                e["deliveries"][0]["state"] == "succeeded"
                for e in api.get(f"/v1/runs/{run['id']}").json()["events"]
            )
        )
    assert sorted(_delivered(receiver.got(hook)[20:])) == sorted(PATH)


def test_redeliver_sends_the_same_event_again(stack: Stack, receiver: Receiver) -> None:
    hook = unique("again")
    with stack.client() as api:
        sub = subscribe(api, receiver.url(hook))
        run = _start(api)
        wait_for(lambda: len(receiver.got(hook)) == 5)
        event_id = api.get(f"/v1/runs/{run['id']}").json()["events"][1]["id"]
        response = api.post(f"/v1/events/{event_id}/redeliver", json={})
        assert response.status_code == 202 and response.json()["subscriptions"] == [sub["id"]], (
            "only this test's subscription matched the event",
            response.json(),
        )
        wait_for(lambda: len(receiver.got(hook)) == 6)
    last = receiver.got(hook)[-1]
    assert last.headers["webhook-id"] == event_id
    assert last.body == receiver.got(hook)[1].body
    _verify_all([last], sub["secret"])


def test_retry_after_is_honoured(stack: Stack, receiver: Receiver) -> None:
    hook = unique("later")
    receiver.plan(hook, ("retry_after", 429, 1), default=204)
    with stack.client() as api:
        subscribe(api, receiver.url(hook))
        _start(api)
        wait_for(lambda: len(receiver.got(hook)) >= 2)
    first, second = receiver.got(hook)[:2]
    assert second.at - first.at >= 0.95  # not the 0.2 s of the schedule


def test_signatures_verify_across_a_rotation(stack: Stack, receiver: Receiver) -> None:
    hook = unique("rot")

    def distinct() -> list[Hit]:
        """First POST of each webhook-id (delivery is at-least-once: a worker stalled past its
        lease on a loaded machine may send one twice)."""
        seen: dict[str, Hit] = {}
        for hit in receiver.got(hook):
            seen.setdefault(hit.headers["webhook-id"], hit)
        return list(seen.values())

    with stack.client() as api:
        sub = subscribe(api, receiver.url(hook), filter={"event_types": ["ping"]})
        api.post(f"/v1/subscriptions/{sub['id']}/test").raise_for_status()
        wait_for(lambda: len(distinct()) == 1, what="first ping")
        rotated = api.post(f"/v1/subscriptions/{sub['id']}/rotate-secret").json()
        assert rotated["secret"].startswith("whsec_") and rotated["secret"] != sub["secret"]
        api.post(f"/v1/subscriptions/{sub['id']}/test").raise_for_status()
        wait_for(lambda: len(distinct()) == 2, what="second ping")
    before, after = distinct()
    assert before.json["type"] == "ping"
    _verify_all([before], sub["secret"])
    assert len(after.headers["webhook-signature"].split()) == 2
    _verify_all([after], sub["secret"], rotated["secret"])  # both verify during the grace period


def test_callback_url_is_signed_with_the_tenant_callback_secret(
    stack: Stack, receiver: Receiver
) -> None:
    hook = unique("cb")
    with stack.client("t3") as api:
        run = _start(api, callback_url=receiver.url(hook))
        assert run["callback_url"] == receiver.url(hook)
        wait_for(lambda: len(receiver.got(hook)) == 5)
        secret = api.post("/v1/callback-secret").json()["secret"]
        again = api.post("/v1/callback-secret")
    assert again.status_code == 409 and "secret" not in again.json()
    assert _delivered(receiver.got(hook)) == PATH
    _verify_all(receiver.got(hook), secret)


def test_filters_choose_what_a_subscription_receives(stack: Stack, receiver: Receiver) -> None:
    only_done, autoposting_only = unique("done"), unique("ap")
    with stack.client() as api:
        subscribe(api, receiver.url(only_done), filter={"statuses": ["completed"]})
        subscribe(api, receiver.url(autoposting_only), filter={"providers": ["autoposting"]})
        run = _start(api)
        wait_for(lambda: api.get(f"/v1/runs/{run['id']}").json()["state"] == "completed")
        wait_for(lambda: len(receiver.got(only_done)) == 1)
        time.sleep(0.3)
    assert _delivered(receiver.got(only_done)) == ["completed"]
    assert receiver.got(autoposting_only) == []


def test_other_tenant_cannot_see_or_touch_a_subscription(stack: Stack, receiver: Receiver) -> None:
    with stack.client("t1") as mine, stack.client("t2") as theirs:
        sub = subscribe(mine, receiver.url(unique("iso")))
        assert theirs.get(f"/v1/subscriptions/{sub['id']}").status_code == 404
        assert (
            theirs.patch(f"/v1/subscriptions/{sub['id']}", json={"enabled": False}).status_code
            == 404
        )
        assert theirs.delete(f"/v1/subscriptions/{sub['id']}").status_code == 404
        assert theirs.post(f"/v1/subscriptions/{sub['id']}/rotate-secret").status_code == 404
        assert sub["id"] not in [s["id"] for s in theirs.get("/v1/subscriptions").json()["data"]]
        assert mine.get(f"/v1/subscriptions/{sub['id']}").json()["enabled"] is True
