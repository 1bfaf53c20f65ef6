"""Invariant 7: an API key sees and changes only its own tenant's runs, subscriptions, watches and
events; any other tenant's id answers 404, exactly like an id that does not exist.

Tenant t1 owns a run (with its first event recorded), a subscription, a callback subscription and
a watch. Tenant t2 then tries every route of the table that takes an id, and lists everything.
Afterwards t1's objects are as they were, and t2 never saw or received anything of t1's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis

from relay.api.app import TABLE
from relay.store import keys
from tests.support.receiver import Receiver
from tests.support.stack import Stack, subscribe, unique, wait_for

#: Subscription fields a worker or t1's own deliveries may move; everything else must not change.
_SUB_VOLATILE = {"failing_since", "updated_at"}
#: The watch fields its creator set; the rest (last_listed_at, runs_seen...) the worker moves.
_WATCH_OWN = {"id", "tenant", "provider", "agent_id", "metadata", "include_existing", "created_at"}


@dataclass
class Owned:
    run: dict[str, Any]
    event_id: str
    ping_event_id: str
    sub: dict[str, Any]
    callback_sub_id: str
    watch: dict[str, Any]
    hook: str
    other_hook: str


@pytest.fixture(scope="module")
def owned(stack: Stack, receiver: Receiver, rdb: redis.Redis) -> Iterator[Owned]:
    hook, other_hook, callback_hook = unique("iso1-"), unique("iso2-"), unique("isocb-")
    with stack.client("t1") as t1, stack.client("t2") as t2:
        # t2 subscribes to everything first: none of t1's events may reach it.
        subscribe(t2, receiver.url(other_hook))
        sub = subscribe(t1, receiver.url(hook), description="t1 only")
        response = t1.post(
            "/v1/runs",
            json={
                "provider": "citedy",
                "input": {"domain": f"{hook}.example"},
                "metadata": {"owner": "t1"},
                "callback_url": receiver.url(callback_hook),
            },
        )
        assert response.status_code == 202, response.text
        run = response.json()
        detail = wait_for(
            lambda: (d := t1.get(f"/v1/runs/{run['id']}").json())["events"] and d,
            what="the run's first event",
        )
        ping = t1.post(f"/v1/subscriptions/{sub['id']}/test")
        assert ping.status_code == 202, ping.text
        event_id, ping_id = detail["events"][0]["id"], ping.json()["event_id"]
        delivered = {event_id, ping_id}
        wait_for(
            lambda: delivered <= {h.headers["webhook-id"] for h in receiver.got(hook)},
            what="t1's first event and ping delivered",
        )
        callback_sub = rdb.hget(f"relay:run:{run['id']}", "callback_sub")
        assert callback_sub, "a run with callback_url records its callback subscription"
        watch = t1.post("/v1/watches", json={"agent_id": unique("iso-agent-")})
        assert watch.status_code == 201, watch.text
        yield Owned(
            run=run,
            event_id=event_id,
            ping_event_id=ping_id,
            sub=sub,
            callback_sub_id=str(callback_sub),
            watch=watch.json(),
            hook=hook,
            other_hook=other_hook,
        )
        t1.delete(f"/v1/watches/{watch.json()['id']}")
        t1.delete(f"/v1/runs/{run['id']}")
        # Left behind, these catch-all subscriptions would receive (and be counted by) every
        # later test's events: the suite must pass in any module order.
        t1.delete(f"/v1/subscriptions/{sub['id']}")
        for other in t2.get("/v1/subscriptions").json()["data"]:
            if other["url"] == receiver.url(other_hook):
                t2.delete(f"/v1/subscriptions/{other['id']}")


def id_routes(o: Owned) -> list[tuple[str, str, Any]]:
    """Every route of the table that names an object, aimed at one of t1's objects."""
    run, sub, watch = o.run["id"], o.sub["id"], o.watch["id"]
    return [
        ("GET", f"/v1/runs/{run}", None),
        ("POST", f"/v1/runs/{run}/refresh", None),
        ("DELETE", f"/v1/runs/{run}", None),
        ("POST", f"/v1/runs/{run}/erase", None),
        ("GET", f"/v1/watches/{watch}", None),
        ("DELETE", f"/v1/watches/{watch}", None),
        ("POST", f"/v1/watches/{watch}/refresh", None),
        ("GET", f"/v1/subscriptions/{sub}", None),
        ("PATCH", f"/v1/subscriptions/{sub}", {"url": "http://127.0.0.1:9/stolen"}),
        ("PATCH", f"/v1/subscriptions/{sub}", {"enabled": False}),
        ("PATCH", f"/v1/subscriptions/{sub}", {"filter": {"providers": ["autoposting"]}}),
        ("DELETE", f"/v1/subscriptions/{sub}", None),
        ("POST", f"/v1/subscriptions/{sub}/rotate-secret", None),
        ("POST", f"/v1/subscriptions/{sub}/test", None),
        ("GET", f"/v1/subscriptions/{sub}/deliveries", None),
        ("GET", f"/v1/subscriptions/{sub}/dead-letters", None),
        ("GET", f"/v1/subscriptions/{sub}/health", None),
        ("GET", f"/v1/subscriptions/{sub}/deliveries?event_id={o.event_id}", None),
        ("POST", f"/v1/subscriptions/{sub}/recover", {"since": 0}),
        ("POST", f"/v1/events/{o.event_id}/redeliver", None),
        ("POST", f"/v1/events/{o.event_id}/redeliver", {"subscription_id": sub}),
        ("POST", f"/v1/events/{o.ping_event_id}/redeliver", None),
        # The callback subscription is internal: 404 for every tenant, its owner included.
        ("GET", f"/v1/subscriptions/{o.callback_sub_id}", None),
        ("POST", f"/v1/subscriptions/{o.callback_sub_id}/rotate-secret", None),
        ("DELETE", f"/v1/subscriptions/{o.callback_sub_id}", None),
    ]


def test_every_id_route_is_covered() -> None:
    """If a route taking an id is added to the table, this test must learn about it."""
    templated = {
        (op.method, op.path.replace("{run_id}", "R").replace("{sub_id}", "S"))
        for op, _ in TABLE
        # Connections are named by provider within the caller's own tenant (tests/test_tenants.py
        # shows one tenant's never answers another); admin routes take the operator's key.
        if "{" in op.path and not op.admin and "{provider}" not in op.path
    }
    templated = {(m, p.replace("{watch_id}", "W").replace("{event_id}", "E")) for m, p in templated}
    fake = Owned(
        run={"id": "R"},
        event_id="E",
        ping_event_id="E",
        sub={"id": "S"},
        callback_sub_id="S",
        watch={"id": "W"},
        hook="",
        other_hook="",
    )
    covered = {(m, p.split("?")[0]) for m, p, _ in id_routes(fake)}
    assert templated <= covered, templated - covered


def _snapshot_t1(rdb: redis.Redis, o: Owned) -> dict[str, Any]:
    sub = rdb.hgetall(f"relay:sub:{o.sub['id']}")
    return {
        "sub": {k: v for k, v in sub.items() if k not in _SUB_VOLATILE},
        "callback_sub": rdb.hgetall(f"relay:sub:{o.callback_sub_id}"),
        "watch": {
            k: v for k, v in rdb.hgetall(f"relay:watch:{o.watch['id']}").items() if k in _WATCH_OWN
        },
        "watch_due": rdb.zscore("relay:due:watch", o.watch["id"]) is not None,
        "run_tenant": rdb.hget(f"relay:run:{o.run['id']}", "tenant"),
        "run_metadata": rdb.hget(f"relay:run:{o.run['id']}", "metadata"),
        "run_callback": rdb.hget(f"relay:run:{o.run['id']}", "callback_url"),
        "tenant_sets": {
            "subs": rdb.sismember("relay:tenant:t1:subs", o.sub["id"]),
            "watches": rdb.sismember("relay:tenant:t1:watches", o.watch["id"]),
            "runs": rdb.zscore("relay:tenant:t1:runs", o.run["id"]) is not None,
        },
    }


def _not_found_shape(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 404, (response.status_code, response.text)
    body = response.json()
    assert isinstance(body.get("error"), str) and isinstance(body.get("message"), str), body
    assert body["error"] == "not_found", body
    return body


def test_other_tenant_gets_404_everywhere_and_changes_nothing(
    stack: Stack, receiver: Receiver, rdb: redis.Redis, owned: Owned
) -> None:
    before = _snapshot_t1(rdb, owned)

    def sent(event_id: str) -> int:
        return sum(h.headers["webhook-id"] == event_id for h in receiver.got(owned.hook))

    sent_before = {e: sent(e) for e in (owned.event_id, owned.ping_event_id)}
    failures: list[str] = []
    with stack.client("t2") as t2:
        for method, path, body in id_routes(owned):
            response = t2.request(method, path, json=body)
            try:
                got = _not_found_shape(response)
            except AssertionError as exc:
                failures.append(f"{method} {path}: {exc}")
                continue
            # No existence oracle: the same answer as for an id that was never issued.
            ghost_path = path
            for real in (owned.run["id"], owned.sub["id"], owned.watch["id"], owned.event_id):
                ghost_path = ghost_path.replace(real, real[:4] + "doesnotexist000")
            ghost_path = ghost_path.replace(owned.ping_event_id, "evt_doesnotexist000")
            ghost_path = ghost_path.replace(owned.callback_sub_id, "sub_doesnotexist000")
            ghost_body = body
            if isinstance(body, dict) and "subscription_id" in body:
                ghost_body = {"subscription_id": "sub_doesnotexist000"}
            ghost = t2.request(method, ghost_path, json=ghost_body)
            if ghost.status_code != 404 or ghost.json() != got:
                failures.append(f"{method} {path}: {got} differs from {ghost.text}")
    assert not failures, "\n".join(failures)

    assert _snapshot_t1(rdb, owned) == before
    with stack.client("t1") as t1:
        run = t1.get(f"/v1/runs/{owned.run['id']}")
        assert run.status_code == 200, run.text
        assert run.json()["state"] != "stopped"
        assert run.json()["metadata"] == {"owner": "t1"}
        sub = t1.get(f"/v1/subscriptions/{owned.sub['id']}").json()
        assert sub["url"] == receiver.url(owned.hook)
        assert sub["enabled"] is True
        assert sub["filter"] == owned.sub["filter"]
        assert t1.get(f"/v1/watches/{owned.watch['id']}").status_code == 200
    # t2's /test and redeliver attempts sent nothing to t1's subscriber (deliveries take well
    # under a second here, so one second is ample time for a wrongly queued one to arrive).
    time.sleep(1.0)
    assert {e: sent(e) for e in sent_before} == sent_before
    pings = [h for h in receiver.got(owned.hook) if h.json.get("type") == "ping"]
    assert len(pings) == 1


def test_other_tenant_lists_show_nothing_of_t1(
    stack: Stack, rdb: redis.Redis, owned: Owned
) -> None:
    with stack.client("t2") as t2:
        seen: list[str] = []
        cursor: str | None = None
        for _ in range(100):
            params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
            page = t2.get("/v1/runs", params=params)
            assert page.status_code == 200, page.text
            seen += [r["id"] for r in page.json()["data"]]
            cursor = page.json()["next_cursor"]
            if not cursor:
                break
        assert owned.run["id"] not in seen
        for status in ("queued", "completed", "tracking", "signals_running"):
            listed = t2.get("/v1/runs", params={"status": status, "provider": "citedy"}).json()
            assert owned.run["id"] not in [r["id"] for r in listed["data"]]
        subs = [s["id"] for s in t2.get("/v1/subscriptions").json()["data"]]
        assert owned.sub["id"] not in subs and owned.callback_sub_id not in subs
        watches = [w["id"] for w in t2.get("/v1/watches").json()["data"]]
        assert owned.watch["id"] not in watches
        for delivery in ("dead", "failing"):
            listed = t2.get("/v1/runs", params={"delivery": delivery, "limit": 200}).json()
            assert owned.run["id"] not in [r["id"] for r in listed["data"]]
        # Acknowledging is the tenant's own: t2's leaves t1's acknowledgement where it was.
        acked = rdb.zscore(keys.tenant_notices_acked("t1"), "until")
        assert t2.post("/v1/notices/acknowledge").status_code == 200
        assert rdb.zscore(keys.tenant_notices_acked("t1"), "until") == acked
    with stack.client("t1") as t1:
        # The lists do show them to their owner, so the checks above can fail.
        assert owned.sub["id"] in [s["id"] for s in t1.get("/v1/subscriptions").json()["data"]]
        assert owned.watch["id"] in [w["id"] for w in t1.get("/v1/watches").json()["data"]]
        assert owned.run["id"] in [r["id"] for r in t1.get("/v1/runs").json()["data"]]


def test_other_tenant_subscriber_receives_none_of_t1s_events(
    stack: Stack, receiver: Receiver, owned: Owned
) -> None:
    with stack.client("t1") as t1:
        wait_for(
            lambda: t1.get(f"/v1/runs/{owned.run['id']}").json()["terminal"],
            what="t1's run to finish",
        )
    wait_for(lambda: len(receiver.got(owned.hook)) >= 6, what="t1's five events and one ping")
    leaked = [
        h.json
        for h in receiver.got(owned.other_hook)
        if h.json.get("data", {}).get("run", {}).get("id") == owned.run["id"]
        or h.json.get("data", {}).get("run", {}).get("metadata") == {"owner": "t1"}
    ]
    assert leaked == []
    detail = None
    with stack.client("t1") as t1:
        detail = t1.get(f"/v1/runs/{owned.run['id']}").json()
    delivered_to = {d["subscription_id"] for e in detail["events"] for d in e["deliveries"]}
    assert delivered_to == {owned.sub["id"], owned.callback_sub_id}


def test_same_upstream_run_and_idempotency_key_stay_per_tenant(stack: Stack) -> None:
    """Tracking the same vendor run, or reusing the same Idempotency-Key, in another tenant makes
    that tenant its own run: never t1's run, and never a 409 caused by t1's body."""
    upstream, key = unique("shared-up-"), unique("shared-key-")
    with stack.client("t1") as t1, stack.client("t2") as t2:
        first = t1.post(
            "/v1/runs",
            json={"provider": "citedy", "upstream_run_id": upstream, "metadata": {"t": 1}},
            headers={"idempotency-key": key},
        )
        assert first.status_code == 202, first.text
        second = t2.post(
            "/v1/runs",
            json={"provider": "citedy", "upstream_run_id": upstream, "metadata": {"t": 2}},
            headers={"idempotency-key": key},
        )
        assert second.status_code == 202, second.text
        assert second.json()["id"] != first.json()["id"]
        assert second.json()["metadata"] == {"t": 2}
        assert t2.get(f"/v1/runs/{first.json()['id']}").status_code == 404
        assert t1.get(f"/v1/runs/{second.json()['id']}").status_code == 404
        # Each tenant's retry finds its own run.
        again = t1.post(
            "/v1/runs",
            json={"provider": "citedy", "upstream_run_id": upstream, "metadata": {"t": 1}},
            headers={"idempotency-key": key},
        )
        assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
        t1.delete(f"/v1/runs/{first.json()['id']}")
        t2.delete(f"/v1/runs/{second.json()['id']}")


def test_callback_secret_is_per_tenant(stack: Stack, rdb: redis.Redis, owned: Owned) -> None:
    """t1's callback secret exists (its run has a callback_url); t2 rotating its own leaves it."""
    key = "relay:tenant:t1:callback-secret"
    stored = rdb.get(key)
    assert stored
    with stack.client("t2") as t2:
        rotated = t2.post("/v1/callback-secret", params={"rotate": "true"})
        assert rotated.status_code == 200, rotated.text
        assert rotated.json()["secret"].startswith("whsec_")
        assert rotated.json()["secret"] not in stored
    assert rdb.get(key) == stored
    assert rdb.get("relay:tenant:t2:callback-secret") != stored
