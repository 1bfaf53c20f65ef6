"""The rest of the console an operator lives in (issue 26): runs listed by delivery outcome (API
and console), the tenant's watches, connections and usage pages, notices grouped and
acknowledged, "waiting behind #N" on the run page and live refresh of the run and deliveries
pages. Real Valkey, uvicorn, workers and Chromium on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from typing import Any

import httpx
import redis

from relay.store import keys
from tests.support.browser import chromium
from tests.support.receiver import Receiver
from tests.support.stack import CITEDY_KEY, TENANT_KEYS, Stack, subscribe, unique, wait_for
from tests.test_console import console, csrf_of
from tests.test_console_pages import _completed, _runs_on


def _listed(api: httpx.Client, delivery: str, **params: Any) -> dict[str, dict[str, Any]]:
    found = api.get("/v1/runs", params={"delivery": delivery, "limit": 200, **params})
    assert found.status_code == 200, found.text
    return {run["id"]: run for run in found.json()["data"]}


def test_runs_are_listed_by_delivery_outcome_until_none_is_left(
    stack: Stack, receiver: Receiver
) -> None:
    hook = unique("dead")
    receiver.plan(hook, default=500)
    with stack.client("t2") as api:
        sub = subscribe(api, receiver.url(hook), description="always 500")
        try:
            run = _completed(api, f"{unique('dl')}.example")
            shown = wait_for(
                lambda: (
                    _listed(api, "dead").get(run["id"], {}).get("deliveries_dead") == 5
                    and _listed(api, "dead")[run["id"]]
                ),
                30,
                0.2,
                "five dead letters",
            )
            assert shown["deliveries_failing"] == 0
            assert run["id"] in _listed(api, "dead", provider="citedy")
            assert run["id"] not in _listed(api, "dead", provider="autoposting")
            assert run["id"] not in _listed(api, "failing")
            counted = api.get("/v1/runs", params={"delivery": "dead", "limit": 1}).json()
            assert counted["total"] >= 1
            with console(stack, "t2") as client:
                page = client.get("/console/runs", params={"delivery": "dead"})
                assert page.status_code == 200
                assert run["id"] in _runs_on(page.text)
                assert '<option value="dead" selected>' in page.text
                assert "5 dead" in page.text
                wrong = client.get("/console/runs", params={"delivery": "gone"})
                assert wrong.status_code == 400 and "delivery: expected one of" in wrong.text
                both = client.get("/console/runs", params={"delivery": "dead", "status": "x"})
                assert both.status_code == 400 and "cannot be combined" in both.text
            # Recovered into an endpoint that works now: no dead delivery left, off the list.
            receiver.plan(hook, default=204)
            assert (
                api.post(f"/v1/subscriptions/{sub['id']}/recover", json={"since": 0}).json()[
                    "recovered"
                ]
                == 5
            )
            wait_for(
                lambda: (
                    run["id"] not in _listed(api, "dead")
                    and run["id"] not in _listed(api, "failing")
                ),
                30,
                0.2,
                "the run to leave the dead list",
            )
            again = api.get(f"/v1/runs/{run['id']}").json()
            assert (again["deliveries_dead"], again["deliveries_failing"]) == (0, 0)
        finally:
            api.delete(f"/v1/subscriptions/{sub['id']}")


async def test_a_retrying_head_shows_what_waits_behind_it_and_the_page_refreshes_live(
    stack: Stack, receiver: Receiver
) -> None:
    hook = unique("behind")
    receiver.plan(hook, ("retry_after", 503, 30), default=204)
    api = stack.client("t1")
    sub = subscribe(api, receiver.url(hook), description="slow to come back")
    try:
        run = _completed(api, f"{unique('wb')}.example")
        wait_for(lambda: run["id"] in _listed(api, "failing"), 30, 0.2, "the head to be retrying")
        with console(stack, "t1") as client:
            failing = client.get("/console/runs", params={"delivery": "failing"})
            assert run["id"] in _runs_on(failing.text)
            page = client.get(f"/console/runs/{run['id']}")
        waits = re.findall(r'data-behind="(\d+)">waiting behind #(\d+) \(retrying\)', page.text)
        assert len(waits) == len(run["events"]) - 1, waits
        assert {w for w, _ in waits} == {"1"}
        assert '<meta http-equiv="refresh"' not in page.text

        base = stack.api_url
        async with chromium() as browser:
            await browser.goto(f"{base}/console/login")
            await browser.type("#api_key", TENANT_KEYS["t1"])
            await browser.click("form[action='/console/login'] button")
            for path in (f"/console/runs/{run['id']}", "/console/deliveries"):
                await browser.goto(base + path + "?done=redelivered&n=1")
                await browser.click("a[data-action='live']")
                assert await browser.url() == base + path + "?live=1"
                assert await browser.count("meta[http-equiv='refresh'][content='5']") == 1
                assert await browser.a11y_problems() == [], path
                # It reloads by itself (a fresh document), then the toggle turns it off.
                await browser.eval("window.__stale = 1")
                await wait_async(
                    lambda b=browser: b.eval("window.__stale === undefined"), 12, "a reload"
                )
                await browser.click("a[data-action='live']")
                assert await browser.url() == base + path
                assert await browser.count("meta[http-equiv='refresh']") == 0
    finally:
        api.delete(f"/v1/subscriptions/{sub['id']}")
        api.close()


async def wait_async(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # the page may be between documents
            if await check():
                return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_watches_connections_and_usage_pages(stack: Stack) -> None:
    with stack.client("t2") as api:
        agent = unique("agent")
        watch = api.post("/v1/watches", json={"agent_id": agent})
        assert watch.status_code == 201, watch.text
        put = api.put("/v1/connections/citedy", json={"api_key": CITEDY_KEY})
        assert put.status_code in (200, 201), put.text
        try:
            with console(stack, "t2") as client:
                page = client.get("/console/watches")
                assert page.status_code == 200
                assert f'id="{watch.json()["id"]}"' in page.text and agent in page.text
                token = csrf_of(client, "/console/watches")
                done = client.post(
                    f"/console/watches/{watch.json()['id']}/refresh",
                    data={"csrf": token},
                    headers={"origin": stack.api_url},
                )
                assert done.status_code == 303
                assert "done=listed" in done.headers["location"]
                other = client.post(
                    "/console/watches/wch_nope/refresh",
                    data={"csrf": token},
                    headers={"origin": stack.api_url},
                )
                assert other.status_code == 404

                conns = client.get("/console/connections")
                assert conns.status_code == 200
                assert "…" + CITEDY_KEY[-4:] in conns.text
                assert CITEDY_KEY not in conns.text, "the key itself is never shown"
                assert 'data-provider="autoposting"' in conns.text

                usage = client.get("/console/usage")
                assert usage.status_code == 200
                assert 'id="usage-totals"' in usage.text
                assert "runs started" in usage.text or "runs" in usage.text
                assert 'data-note="api-keys"' in usage.text and "relay keys" in usage.text
        finally:
            api.delete(f"/v1/watches/{watch.json()['id']}")
            api.delete("/v1/connections/citedy")


async def test_notices_are_grouped_linked_and_acknowledged(stack: Stack) -> None:
    r = redis.Redis.from_url(stack.env["REDIS_URL"], decode_responses=True)
    tenant = "t2"
    marker = unique("g")
    now = time.time()
    kept = [
        {
            "type": "subscription.disabled",
            "subscription_id": f"sub_{marker}",
            "at": now - 300,
            "reason": "first",
        },
        {
            "type": "vendor.unauthorized",
            "provider": "citedy",
            "run_id": f"run_{marker}",
            "at": now - 200,
            "reason": "citedy answered 401",
        },
        {
            "type": "subscription.disabled",
            "subscription_id": f"sub_{marker}",
            "at": now - 100,
            "reason": "latest",
        },
        {
            "type": "watch.set_aside",
            "watch_id": f"wch_{marker}",
            "at": now - 50,
            "reason": "listing failed",
        },
    ]
    for notice in kept:  # newest first, as the workers keep them
        r.lpush(keys.tenant_notices(tenant), json.dumps(notice))
    try:
        with stack.client(tenant) as api:
            listed = api.get("/v1/notices", params={"limit": 200}).json()["data"]
            mine = [n for n in listed if marker in json.dumps(n)]
            assert len(mine) == 4 and not any(n["acknowledged"] for n in mine)
        base = stack.api_url
        async with chromium() as page:
            await page.goto(f"{base}/console/login")
            await page.type("#api_key", TENANT_KEYS[tenant])
            await page.click("form[action='/console/login'] button")
            await page.goto(f"{base}/console/notices")
            html = await page.eval("document.querySelector('main').innerHTML")
            row = re.search(
                rf'<tr class="notice" data-acknowledged="0">(?:(?!</tr>).)*sub_{marker}.*?</tr>',
                html,
                re.S,
            )
            assert row, html[:2000]
            cells = row.group(0)
            assert '<td class="num">2</td>' in cells and "latest" in cells
            assert f'href="/console/subscriptions/sub_{marker}"' in cells
            assert f'href="/console/watches#wch_{marker}"' in html
            assert f'href="/console/runs/run_{marker}"' in html
            assert 'href="/console/connections"' in html
            assert await page.a11y_problems() == []
            await page.click("button[data-action='acknowledge']")
            assert "Notices acknowledged" in await page.text()
            assert await page.count("button[data-action='acknowledge']") == 0
            for path in ("/console/watches", "/console/connections", "/console/usage"):
                await page.goto(base + path)
                assert await page.a11y_problems() == [], path
        with stack.client(tenant) as api:
            listed = api.get("/v1/notices", params={"limit": 200}).json()["data"]
            assert all(n["acknowledged"] for n in listed if marker in json.dumps(n))
            # A notice kept after the acknowledgement is new again.
            r.lpush(
                keys.tenant_notices(tenant),
                json.dumps(
                    {
                        "type": "watch.set_aside",
                        "watch_id": f"wch_{marker}",
                        "at": time.time() + 1,
                        "reason": "again",
                    }
                ),
            )
            listed = api.get("/v1/notices", params={"limit": 200}).json()["data"]
            assert next(n["acknowledged"] for n in listed if marker in json.dumps(n)) is False
            ack = api.post("/v1/notices/acknowledge", json={"until": 5})
            assert ack.status_code == 200 and ack.json()["acknowledged_until"] > 5, ack.text
            bad = api.post("/v1/notices/acknowledge", json={"until": "soon"})
            assert bad.status_code == 400 and bad.json()["field"] == "until"
    finally:
        for row in r.lrange(keys.tenant_notices(tenant), 0, -1):
            if marker in row:
                r.lrem(keys.tenant_notices(tenant), 1, row)
        r.close()
