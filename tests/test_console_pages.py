"""The console an operator can live in (issue 26): outcomes and health at a glance, counted
pages walked to their end, bad filters answered, safe actions, subscriptions managed, search,
the deliveries log, the run grid with redeliver to one subscriber, and a WCAG AA check and
keyboard-only use in headless Chromium. Real Valkey, uvicorn, workers and Chromium on 127.0.0.1."""

from __future__ import annotations

import json
import re
import time
from typing import Any, cast

import httpx
import redis

from relay.store import keys
from tests.support.browser import chromium
from tests.support.receiver import Receiver
from tests.support.stack import CITEDY_KEY, TENANT_KEYS, Stack, subscribe, unique, wait_for
from tests.test_console import console, csrf_of

HREF = re.compile(r'<a href="([^"]+)" rel="next">')
NEWER = re.compile(r'<a href="([^"]+)" rel="prev">')


def _older(html: str) -> str | None:
    found = HREF.search(html)
    return found.group(1).replace("&amp;", "&") if found else None


def _dead_pager(html: str) -> str:
    found = re.search(r'<nav class="pager" aria-label="Dead letters pages">.*?</nav>', html)
    assert found, "the dead letters have a pager"
    return found.group(0)


def _runs_on(html: str) -> list[str]:
    return re.findall(
        r'<tr class="run" data-outcome="[^"]*"><td><a class="mono" href="/console/runs/(run_\w+)"',
        html,
    )


def _track_stopped(api: httpx.Client, n: int) -> list[str]:
    """`n` runs tracked and stopped at once (no vendor work): listed, never polled."""
    made = []
    for _ in range(n):
        run = api.post(
            "/v1/runs", json={"provider": "citedy", "upstream_run_id": unique("up")}
        ).json()
        assert api.delete(f"/v1/runs/{run['id']}").status_code == 204
        made.append(run["id"])
    return made


def _completed(api: httpx.Client, domain: str) -> dict[str, Any]:
    run = api.post("/v1/runs", json={"provider": "citedy", "input": {"domain": domain}}).json()
    return cast(
        dict[str, Any],
        wait_for(
            lambda: (
                (d := api.get(f"/v1/runs/{run['id']}").json())["state"] != "starting"
                and d["terminal"]
                and d
            ),
            30,
            0.2,
            f"run for {domain} to end",
        ),
    )


def test_runs_are_counted_and_paged_to_the_end_both_ways(stack: Stack) -> None:
    with stack.client("t2") as api:
        mine = _track_stopped(api, 57)
        total = api.get("/v1/runs", params={"status": "stopped", "limit": 1}).json()["total"]
    assert total >= 57
    with console(stack, "t2") as client:
        first = client.get("/console/runs", params={"status": "stopped"})
        assert first.status_code == 200
        assert f"Runs 1-50 of {total}" in first.text
        assert NEWER.search(first.text) is None, "the first page has no newer page"
        seen = _runs_on(first.text)
        assert len(seen) == 50
        pages = [first.text]
        url = _older(first.text)
        while url is not None:
            page = client.get(url)
            assert page.status_code == 200
            pages.append(page.text)
            seen += _runs_on(page.text)
            url = _older(page.text)
        assert len(seen) == len(set(seen)) == total, "every run once, none skipped"
        assert set(mine) <= set(seen)
        assert f"of {total}" in pages[-1] and _older(pages[-1]) is None
        # Newer from page 2 is page 1 again.
        second = pages[1]
        assert "Runs 51-" in second
        newer = NEWER.search(second)
        assert newer is not None
        back = client.get(newer.group(1).replace("&amp;", "&"))
        assert _runs_on(back.text) == _runs_on(first.text)


def test_bad_filters_and_cursors_say_so_with_a_way_back(stack: Stack) -> None:
    with console(stack) as client:
        typo = client.get("/console/runs", params={"provider": "citdy"})
        assert typo.status_code == 400
        assert 'class="flash bad" role="alert"' in typo.text
        assert "no provider is called" in typo.text and "citedy" in typo.text
        assert 'href="/console/runs"' in typo.text and "Show all runs" in typo.text
        cursor = client.get("/console/runs", params={"cursor": "garbage", "status": "stopped"})
        assert cursor.status_code == 400 and "cursor: malformed" in cursor.text
        assert 'href="/console/runs?status=stopped"' in cursor.text
        status = client.get("/console/runs", params={"status": "complted"})
        assert status.status_code == 200
        assert "No run has the state or vendor status" in status.text
        assert "Show all runs" in status.text
        past = client.get("/console/runs", params={"cursor": "1.0:run_a"})
        assert "past the end of the list" in past.text
        for path in ("/console/notices", "/console/deliveries"):
            bad = client.get(path, params={"cursor": "-1"})
            assert bad.status_code == 400 and "cursor: malformed" in bad.text, path
        outcome = client.get("/console/deliveries", params={"outcome": "exploded"})
        assert outcome.status_code == 400 and "outcome: expected one of" in outcome.text


def test_dead_letters_and_attempts_are_counted_and_paged(stack: Stack, receiver: Receiver) -> None:
    with stack.client("t1") as api:
        sub = subscribe(api, receiver.url(unique("paged")), description="paged")
    r = redis.Redis.from_url(stack.env["REDIS_URL"], decode_responses=True)
    now = time.time()
    try:
        r.zadd(keys.sub_dead(sub["id"]), {f"evt_d{i:03d}|run_x": now - i for i in range(124)})
        rows = [
            json.dumps(
                {
                    "at": now - i,
                    "event_id": f"evt_a{i:03d}",
                    "run_id": "run_x",
                    "attempt": 1,
                    "outcome": "retrying",
                    "status_code": 500,
                    "latency_ms": 3.0,
                    "error": "endpoint answered 500",
                }
            )
            for i in range(131)
        ]
        r.rpush(keys.sub_attempts(sub["id"]), *rows)
    finally:
        r.close()
    base = f"/console/subscriptions/{sub['id']}"
    with console(stack) as client:
        page = client.get(base).text
        assert "Dead letters 1-50 of 124" in page and "Attempts 1-50 of 131" in page
        dead_seen: list[str] = re.findall(r'<tr class="dead"><td class="mono">(evt_d\d+)', page)
        url = _older(_dead_pager(page))
        while url is not None:
            page = client.get(url).text
            dead_seen += re.findall(r'<tr class="dead"><td class="mono">(evt_d\d+)', page)
            url = _older(_dead_pager(page))
        assert "Dead letters 101-124 of 124" in page
        assert dead_seen == [f"evt_d{i:03d}" for i in range(124)]
        last = client.get(base, params={"cursor": "100"}).text
        assert "Attempts 101-131 of 131" in last
        assert last.count('<tr class="attempt"') == 31


def test_outcomes_health_and_redeliver_to_one_subscriber(stack: Stack, receiver: Receiver) -> None:
    good, bad = unique("good"), unique("bad")
    receiver.plan(good, default=204)
    receiver.plan(bad, default=500)
    with stack.client("t3") as api:
        ok_sub = subscribe(
            api,
            receiver.url(good),
            description="good one",
            filter={"statuses": ["completed", "blocked", "failed"]},
        )
        bad_sub = subscribe(
            api,
            receiver.url(bad),
            description="bad one",
            filter={"statuses": ["completed", "blocked", "failed"]},
        )
        blocked = _completed(api, f"blocked{unique()}.example")
        failed = _completed(api, f"fail{unique()}.example")
        done = _completed(api, f"{unique('ok')}.example")
        assert (blocked["status"], failed["status"], done["status"]) == (
            "blocked",
            "failed",
            "completed",
        )
        wait_for(
            lambda: all(
                d["state"] in ("succeeded", "dead")
                for run in (blocked, failed, done)
                for e in api.get(f"/v1/runs/{run['id']}").json()["events"]
                for d in e["deliveries"]
            ),
            30,
            0.2,
            "every delivery settled",
        )
    with console(stack, "t3") as client:
        listing = client.get("/console/runs").text
        for run, outcome in ((blocked, "blocked"), (failed, "failed"), (done, "succeeded")):
            row = re.search(
                rf'<tr class="run" data-outcome="(\w+)"><td><a class="mono" '
                rf'href="/console/runs/{run["id"]}">.*?</tr>',
                listing,
                re.S,
            )
            assert row and row.group(1) == outcome, (run["id"], outcome)
            cell = re.search(
                r"<td>([^<]*delivered[^<]*(?:<span[^>]*>[^<]*</span>)?)</td>", row.group(0)
            )
            assert cell, row.group(0)
            assert "1 dead" in cell.group(1) and "/2 delivered" in cell.group(1), cell.group(1)
        assert '<span class="badge bad">blocked</span>' in listing
        subs = client.get("/console/subscriptions").text
        assert re.search(
            rf'data-health="healthy">.*?{ok_sub["id"]}|{ok_sub["id"]}.*?data-health="healthy"',
            subs,
            re.S,
        )
        bad_row = re.search(
            rf'<tr class="sub" data-health="(\w+)"><td><a class="mono" '
            rf'href="/console/subscriptions/{bad_sub["id"]}">.*?</tr>',
            subs,
            re.S,
        )
        assert bad_row and bad_row.group(1) == "failing" and "failing since" in bad_row.group(0)
        assert "0% of" in bad_row.group(0)

        run_page = client.get(f"/console/runs/{done['id']}").text
        event_id = re.findall(r'<tr class="event" id="(evt_\w+)"', run_page)[-1]
        label = f'aria-label="Redeliver {event_id} to {ok_sub["id"]}"'
        assert label in run_page
        assert f'aria-label="Redeliver {event_id} to {bad_sub["id"]}"' in run_page
        hits_good, hits_bad = len(receiver.got(good)), len(receiver.got(bad))
        token = csrf_of(client)
        sent = client.post(
            f"/console/events/{event_id}/redeliver",
            data={"csrf": token, "subscription_id": ok_sub["id"]},
        )
        assert sent.status_code == 303 and "n=1" in sent.headers["location"]
        wait_for(lambda: len(receiver.got(good)) > hits_good, 15, 0.1, "the redelivery")
        time.sleep(1.0)
        assert len(receiver.got(bad)) == hits_bad, "the other subscriber got nothing again"


def test_a_vendor_402_shows_credits_and_the_top_up_link(stack: Stack, sim: httpx.Client) -> None:
    sim.post("/_sim/credits", json={"api_key": CITEDY_KEY, "balance": 10}).raise_for_status()
    with stack.client("t1") as api:
        run = api.post(
            "/v1/runs", json={"provider": "citedy", "input": {"domain": f"{unique()}.example"}}
        ).json()
        wait_for(
            lambda: api.get(f"/v1/runs/{run['id']}").json()["state"] == "start_failed",
            20,
            0.2,
            "the start to fail",
        )
    with console(stack) as client:
        page = client.get(f"/console/runs/{run['id']}").text
    assert "credits required: <b>40</b>" in page
    assert "credits available: <b>10</b>" in page
    assert re.search(r'<a href="https?://[^"]+" rel="noreferrer">Top up credits</a>', page)
    assert "<dt>agent</dt>" not in page and "<dt>callback</dt>" not in page, "empty fields hidden"
    assert '<span class="badge bad">start_failed</span>' in page


def test_erase_asks_first_and_names_the_run_after(stack: Stack) -> None:
    with stack.client("t1") as api:
        (run_id,) = _track_stopped(api, 1)
    with console(stack) as client:
        confirm = client.get(f"/console/runs/{run_id}/erase")
        assert confirm.status_code == 200 and f"Erase run {run_id}?" in confirm.text
        assert (
            f'<a href="/console/runs/{run_id}" class="button" data-action="cancel">' in confirm.text
        )
        with stack.client("t1") as api:
            assert api.get(f"/v1/runs/{run_id}").status_code == 200, "a GET erases nothing"
        done = client.post(f"/console/runs/{run_id}/erase", data={"csrf": csrf_of(client)})
        assert done.status_code == 303
        after = client.get(done.headers["location"])
        assert f"Run {run_id} and everything about it were erased." in after.text
    with stack.client("t1") as api:
        assert api.get(f"/v1/runs/{run_id}").status_code == 404


def test_subscriptions_are_created_edited_and_deleted_in_the_console(
    stack: Stack, receiver: Receiver
) -> None:
    url = receiver.url(unique("crud"))
    with console(stack) as client:
        token = csrf_of(client, "/console/subscriptions/new")
        refused = client.post(
            "/console/subscriptions",
            data={"csrf": token, "url": url, "headers": "Host: evil.example", "rate_limit": ""},
        )
        assert refused.status_code == 400 and 'class="flash bad"' in refused.text
        assert "headers" in refused.text
        made = client.post(
            "/console/subscriptions",
            data={
                "csrf": token,
                "url": url,
                "description": "CRM",
                "provider_citedy": "on",
                "statuses": "completed, failed",
                "type_run.status_changed": "on",
                "headers": "X-Crm-Token: s3cret-value",
                "rate_limit": "2.5",
            },
        )
        assert made.status_code == 303
        location = made.headers["location"]
        sub_id = location.split("/console/subscriptions/")[1].split("?")[0]
        shown = client.get(location).text
        assert re.search(r'id="new-secret">whsec_', shown)
        assert "X-Crm-Token" in shown and "s3cret-value" not in shown
        assert "2.5 per second" in shown
        assert "whsec_" not in client.get(location).text, "shown once"
        with stack.client("t1") as api:
            sub = api.get(f"/v1/subscriptions/{sub_id}").json()
        assert sub["filter"] == {
            "providers": ["citedy"],
            "statuses": ["completed", "failed"],
            "event_types": ["run.status_changed"],
        }
        assert sub["headers"] == ["X-Crm-Token"] and sub["rate_limit"] == 2.5

        edit = client.get(f"/console/subscriptions/{sub_id}/edit").text
        assert 'value="CRM"' in edit and "s3cret-value" not in edit
        saved = client.post(
            f"/console/subscriptions/{sub_id}/edit",
            data={
                "csrf": token,
                "url": url,
                "description": "CRM v2",
                "statuses": "",
                "headers": "",
                "rate_limit": "",
            },
        )
        assert saved.status_code == 303 and saved.headers["location"].endswith("done=saved")
        with stack.client("t1") as api:
            sub = api.get(f"/v1/subscriptions/{sub_id}").json()
        assert sub["description"] == "CRM v2" and sub["headers"] == ["X-Crm-Token"]
        assert sub["rate_limit"] is None and sub["filter"]["providers"] == []
        client.post(
            f"/console/subscriptions/{sub_id}/edit",
            data={"csrf": token, "url": url, "clear_headers": "on", "rate_limit": "x"},
        )
        with stack.client("t1") as api:
            assert api.get(f"/v1/subscriptions/{sub_id}").json()["headers"] == ["X-Crm-Token"]
        client.post(
            f"/console/subscriptions/{sub_id}/edit",
            data={"csrf": token, "url": url, "clear_headers": "on", "rate_limit": ""},
        )
        with stack.client("t1") as api:
            assert api.get(f"/v1/subscriptions/{sub_id}").json()["headers"] == []

        confirm = client.get(f"/console/subscriptions/{sub_id}/delete")
        assert f"Delete subscription {sub_id}?" in confirm.text
        gone = client.post(f"/console/subscriptions/{sub_id}/delete", data={"csrf": token})
        assert gone.status_code == 303
        assert f"Subscription {sub_id} was deleted" in client.get(gone.headers["location"]).text
    with stack.client("t1") as api:
        assert api.get(f"/v1/subscriptions/{sub_id}").status_code == 404


def test_search_by_id_upstream_id_and_domain_and_the_deliveries_log(
    stack: Stack, receiver: Receiver
) -> None:
    hook = unique("search")
    with stack.client("t2") as api:
        sub = subscribe(api, receiver.url(hook), description="searched")
        domain = f"{unique('acme')}.example"
        run = _completed(api, domain)
        event_id = run["events"][0]["id"]
        wait_for(lambda: len(receiver.got(hook)) >= len(run["events"]), 20, 0.1, "deliveries")
        found = api.get("/v1/search", params={"q": run["upstream_run_id"]}).json()
        assert [h["id"] for h in found["data"]] == [run["id"]]
    with console(stack, "t2") as client:
        for q, target in (
            (run["id"], f"/console/runs/{run['id']}"),
            (event_id, f"/console/runs/{run['id']}#{event_id}"),
            (sub["id"], f"/console/subscriptions/{sub['id']}"),
            (run["upstream_run_id"], f"/console/runs/{run['id']}"),
        ):
            hit = client.get("/console/search", params={"q": q})
            assert hit.status_code == 303 and hit.headers["location"] == target, q
        by_domain = client.get("/console/search", params={"q": domain.split(".")[0]}).text
        assert f'href="/console/runs/{run["id"]}"' in by_domain
        assert "newest 500 runs" in by_domain
        nothing = client.get("/console/search", params={"q": "no-such-thing-anywhere"}).text
        assert "Nothing found" in nothing
        log = client.get(
            "/console/deliveries", params={"subscription": sub["id"], "outcome": "succeeded"}
        ).text
        assert log.count('<tr class="attempt" data-outcome="succeeded"') >= len(run["events"])
        assert 'data-outcome="retrying"' not in log
        assert "Attempts 1-" in log


async def test_every_page_passes_the_a11y_check_and_works_by_keyboard(
    stack: Stack, receiver: Receiver
) -> None:
    hook = unique("a11y")
    receiver.plan(hook, default=500)
    api = stack.client("t3")
    sub = subscribe(api, receiver.url(hook), description="a11y")
    run = _completed(api, f"{unique('kb')}.example")
    wait_for(
        lambda: all(
            d["state"] == "dead"
            for e in api.get(f"/v1/runs/{run['id']}").json()["events"]
            for d in e["deliveries"]
            if d["subscription_id"] == sub["id"]
        ),
        30,
        0.2,
        "dead letters",
    )
    base = stack.api_url
    async with chromium() as page:
        await page.goto(f"{base}/console/login")
        await page.type("#api_key", "not-a-valid-key-00000000")
        await page.click("form[action='/console/login'] button")
        assert await page.count(".flash.bad[role='alert']") == 1, "login error in error style"
        assert await page.a11y_problems() == []
        await page.type("#api_key", TENANT_KEYS["t3"])
        await page.click("form[action='/console/login'] button")
        sub_url = f"{base}/console/subscriptions/{sub['id']}"
        for path in (
            "/console/runs",
            f"/console/runs/{run['id']}",
            "/console/subscriptions",
            sub_url,
            "/console/subscriptions/new",
            f"{sub_url}/edit",
            f"{sub_url}/disable",
            "/console/notices",
            "/console/deliveries",
            "/console/search?q=zz",
            "/console/runs?provider=citdy",
        ):
            await page.goto(path if path.startswith("http") else base + path)
            problems = await page.a11y_problems()
            assert problems == [], (path, problems)

        # The check itself finds what it is there to find.
        await page.eval(
            "document.querySelector('main').insertAdjacentHTML('beforeend', "
            '\'<p style="color:#999">faint</p><button></button>'
            '<a href="/a">Go</a><a href="/b">Go</a>\')'
        )
        caught = " | ".join(await page.a11y_problems())
        assert "text contrast" in caught and "no accessible name" in caught
        assert '"Go" names two different actions' in caught

        # Keyboard only: the skip link first, then to Disable, its confirmation, and back.
        await page.goto(sub_url)
        await page.press("Tab")
        assert (await page.focused())["label"] == "Skip to content"
        await page.press("Enter")
        assert (await page.focused())["id"] == "main"
        await page.tab_to("a[data-action='disable']")
        await page.press("Enter", navigates=True)
        assert await page.url() == f"{sub_url}/disable"
        await page.tab_to("button[data-action='confirm-disable']")
        await page.press("Enter", navigates=True)
        assert "Subscription disabled" in await page.text()
        # Redeliver one dead letter by keyboard: its button names the event and subscription.
        await page.tab_to("button[data-action='enable']")
        await page.press("Enter", navigates=True)
        await page.tab_to("button[data-action='redeliver-one']")
        name = (await page.focused())["label"]
        assert re.fullmatch(rf"Redeliver evt_\w+ to {sub['id']}", name), name
        await page.press("Enter", navigates=True)
        assert "queued again for 1 subscription" in await page.text()
    api.close()
