"""No secret reaches a log line or an error body: the relay's API keys, the vendor keys and the
`whsec_` webhook secrets it issues. Plus the redaction processor on its own, and the
constant-time key comparison of relay/api/auth.py.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from relay.api import auth
from relay.api.auth import KeyRing
from relay.logging import redact, redact_text, register_secrets
from tests.support.receiver import Receiver
from tests.support.stack import (
    AUTOPOSTING_KEY,
    CITEDY_KEY,
    TENANT_KEYS,
    Stack,
    subscribe,
    unique,
    wait_for,
)

WHSEC = re.compile(r"whsec_[A-Za-z0-9+/=_-]{8,}")


class Recorder:
    """Wraps the API clients so every response a client ever saw can be checked afterwards."""

    def __init__(self) -> None:
        self.responses: list[httpx.Response] = []

    def hook(self, response: httpx.Response) -> None:
        response.read()
        self.responses.append(response)

    def client(self, stack: Stack, headers: dict[str, str] | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=stack.api_url,
            timeout=10,
            headers=headers or {},
            event_hooks={"response": [self.hook]},
        )

    def tenant(self, stack: Stack, tenant: str) -> httpx.Client:
        return self.client(stack, {"authorization": f"Bearer {TENANT_KEYS[tenant]}"})

    def errors(self) -> list[httpx.Response]:
        return [r for r in self.responses if r.status_code >= 400]


@pytest.fixture()
def seen() -> Iterator[Recorder]:
    yield Recorder()


def _find(text: str, secrets: dict[str, str]) -> list[str]:
    return [name for name, value in secrets.items() if value and value in text]


def test_flow_leaks_no_secret_to_logs_or_error_bodies(
    stack: Stack, receiver: Receiver, sim: httpx.Client, seen: Recorder
) -> None:
    issued: dict[str, str] = {}
    hook = unique("hyg")
    sizes_before = {p: p.stat().st_size for p in stack.logs.glob("*.log")}
    with seen.tenant(stack, "t1") as t1, seen.tenant(stack, "t2") as t2:
        sub = subscribe(t1, receiver.url(hook))
        issued["subscription secret"] = sub["secret"]
        run = t1.post("/v1/runs", json={"provider": "citedy", "input": {"domain": f"{hook}.io"}})
        assert run.status_code == 202, run.text
        wait_for(lambda: len(receiver.got(hook)) == 5, what="five webhooks")
        rotated = t1.post(f"/v1/subscriptions/{sub['id']}/rotate-secret")
        assert rotated.status_code == 200, rotated.text
        issued["rotated secret"] = rotated.json()["secret"]
        assert t1.post(f"/v1/subscriptions/{sub['id']}/test").status_code == 202
        wait_for(lambda: len(receiver.got(hook)) == 6, what="the ping, signed with both secrets")
        callback = t2.post("/v1/callback-secret", params={"rotate": "true"})
        assert callback.status_code == 200, callback.text
        issued["callback secret"] = callback.json()["secret"]

        # Bad keys, each carrying a configured key inside it: nothing may echo or log them.
        for header in (
            f"Bearer {TENANT_KEYS['t1']}x",
            f"Bearer x{TENANT_KEYS['t2']}",
            f"Basic {TENANT_KEYS['t3']}",
            f"Bearer {CITEDY_KEY}",
            f"Bearer {AUTOPOSTING_KEY}",
            TENANT_KEYS["t1"],
        ):
            with seen.client(stack, {"authorization": header}) as bad:
                assert bad.get("/v1/runs").status_code == 401
                assert bad.post("/v1/runs", json={"provider": "citedy"}).status_code == 401
        with seen.client(stack, {"x-api-key": TENANT_KEYS["t2"]}) as bad:
            assert bad.get(f"/v1/subscriptions/{sub['id']}").status_code == 401
        # Keys inside bad input: an unknown route, a bad body, a bad query.
        assert t1.get(f"/v1/{TENANT_KEYS['t2']}").status_code == 404
        assert t1.get("/v1/runs", params={"cursor": CITEDY_KEY}).status_code == 400
        bad_sub = t1.post("/v1/subscriptions", json={"url": f"ftp://{AUTOPOSTING_KEY}/x"})
        assert bad_sub.status_code == 400
        bad_domain = t1.post(
            "/v1/runs", json={"provider": "citedy", "input": {"domain": f"{CITEDY_KEY}/p"}}
        )
        assert bad_domain.status_code == 400

        # Vendor 401s: revoke both vendor keys (the `sim` fixture resets them after the test).
        agent = unique("hyg-agent-")
        created = sim.post(
            f"/_sim/autoposting/agents/{agent}/runs", json={"statuses": ["queued", "completed"]}
        ).json()["data"]
        sim.post("/_sim/revoke", json={"api_key": CITEDY_KEY}).raise_for_status()
        sim.post("/_sim/revoke", json={"api_key": AUTOPOSTING_KEY}).raise_for_status()
        started = t1.post("/v1/runs", json={"provider": "citedy", "input": {"domain": "r.io"}})
        tracked = t1.post(
            "/v1/runs",
            json={"provider": "autoposting", "agent_id": agent, "upstream_run_id": created["id"]},
        )
        assert started.status_code == 202 and tracked.status_code == 202
        for made in (started, tracked):
            wait_for(
                lambda made=made: t1.get(f"/v1/runs/{made.json()['id']}").json()["error"],
                timeout=20,
                what="the vendor's 401 recorded on the run",
            )
        for made in (started, tracked):
            detail = t1.get(f"/v1/runs/{made.json()['id']}").json()
            assert "unauthorized" in json.dumps(detail["error"]).lower() or "401" in json.dumps(
                detail["error"]
            ), detail["error"]
            for event in detail["events"]:
                assert t1.post(f"/v1/events/{event['id']}/redeliver").status_code == 202

    time.sleep(0.5)  # let the workers flush their last lines
    logs = stack.log_text()
    new_logs = "".join(
        p.read_bytes()[sizes_before.get(p, 0) :].decode(errors="replace")
        for p in stack.logs.glob("*.log")
    )
    # The flow did reach the log lines that carry vendor failures: the check below means something.
    assert "start_failed" in new_logs and "tracking_failed" in new_logs, new_logs[-2000:]

    configured = {
        **{f"API key of {t}": k for t, k in TENANT_KEYS.items()},
        "CITEDY_API_KEY": CITEDY_KEY,
        "AUTOPOSTING_API_KEY": AUTOPOSTING_KEY,
    }
    everything = {**configured, **issued}
    assert _find(logs, everything) == []
    assert WHSEC.findall(logs) == []

    errors = seen.errors()
    assert len(errors) >= 17
    for response in errors:
        assert _find(response.text, everything) == [], (response.request.url, response.text)
        assert not WHSEC.search(response.text), response.text
        for name, value in response.headers.items():
            assert _find(value, everything) == [], (name, value)
    # Successful bodies may carry a secret only where it is issued, never a configured key.
    for response in seen.responses:
        assert _find(response.text, configured) == [], (response.request.url, response.text)
        if WHSEC.search(response.text):
            assert response.request.method == "POST" and response.request.url.path.endswith(
                ("/v1/subscriptions", "/rotate-secret", "/v1/callback-secret")
            ), response.request.url
    # The webhooks themselves carry no key of ours or of the vendors.
    for hit in receiver.got(hook):
        text = hit.body.decode() + json.dumps(hit.headers)
        assert _find(text, everything) == [], text[:300]


# --- the redaction processor ------------------------------------------------------------------


def test_redaction_processor_masks_every_kind_of_secret() -> None:
    registered = "operator-configured-key-0123456789"
    register_secrets(registered, "short", None)
    event: dict[str, Any] = {
        "event": f"calling with {registered} inside",
        "url": "http://vendor/api?x=1",
        "authorization": "Bearer abc.def",
        "Authorization": "anything at all",
        "x-api-key": "sk-social-abc",
        "secret": "plain",
        "api_key": "k",
        "token": "t",
        "password": "p",
        "key": "v",
        "headers": {"Authorization": "Bearer zzz", "X-Api-Key": "v", "accept": "json"},
        "nested": [
            {"msg": "whsec_AbCdEf0123456789+/="},
            ("tuple", "citedy_agent_live_0001"),
            "sk-social-live-key-0002",
            7,
            None,
        ],
        "text": 'header was "Bearer eyJhbGciOi.payload.sig", then more',
        "sealed": "enc:gAAAAABlmnopqrstuv",
        "count": 3,
    }
    out = redact(None, "info", dict(event))
    rendered = json.dumps(out)
    for needle in (
        registered,
        "abc.def",
        "anything at all",
        "sk-social-abc",
        "plain",
        "zzz",
        "whsec_AbCdEf",
        "citedy_agent_live",
        "sk-social-live",
        "eyJhbGciOi",
        "enc:gAAAA",
    ):
        assert needle not in rendered, (needle, rendered)
    assert out["headers"]["accept"] == "json"
    assert out["count"] == 3 and out["nested"][3] == 7 and out["nested"][4] is None
    assert out["url"] == "http://vendor/api?x=1"
    assert "then more" in out["text"] and "[redacted]" in out["text"]
    # Short values are not registered (they would mask ordinary words everywhere).
    assert redact_text("a short word") == "a short word"


def test_redaction_of_exception_text_in_real_log_output(capsys: pytest.CaptureFixture) -> None:
    """Through structlog's whole chain, including a rendered traceback."""
    import structlog

    from relay.logging import configure

    secret = "tenant-key-in-a-traceback-0123"
    register_secrets(secret)
    configure("json", "info")
    try:
        log = structlog.get_logger("hygiene-test")
        try:
            raise RuntimeError(f"failed with Authorization: Bearer {secret}")
        except RuntimeError:
            log.exception("boom", authorization=f"Bearer {secret}", detail={"token": secret})
        err = capsys.readouterr().err
    finally:
        structlog.reset_defaults()
    assert "boom" in err and "RuntimeError" in err
    assert secret not in err


# --- constant-time comparison over all keys ---------------------------------------------------


@pytest.fixture()
def counted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def counting(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    return calls


KEYS = {f"configured-key-{i:02d}-0123456789": f"tenant{i}" for i in range(7)}


@pytest.mark.parametrize(
    "presented",
    [
        next(iter(KEYS)),  # the first key matches: the loop must not stop there
        list(KEYS)[-1],
        list(KEYS)[3],
        "",
        "wrong",
        next(iter(KEYS))[:-1],
        "x" * 10_000,
    ],
)
def test_every_configured_key_is_compared_whatever_is_presented(
    counted: list[tuple[bytes, bytes]], presented: str
) -> None:
    ring = KeyRing(KEYS)
    assert ring.tenant(presented) == KEYS.get(presented)
    assert len(counted) == len(KEYS)
    # Fixed-size digests on both sides: the comparison's time says nothing about the length
    # of the presented key either.
    assert {(len(a), len(b)) for a, b in counted} == {(32, 32)}
    assert len({b for _, b in counted}) == len(KEYS)


def test_the_ingress_authenticates_through_the_keyring(
    counted: list[tuple[bytes, bytes]],
) -> None:
    from relay.api.app import create_app
    from relay.config import Settings

    settings = Settings(
        RELAY_API_KEYS=",".join(f"{t}:{k}" for k, t in KEYS.items()),
        REDIS_URL="redis://127.0.0.1:1",
    )
    app = create_app(settings)  # no lifespan run: a 401 needs no Redis

    async def get(header: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
            return await client.get("/v1/runs", headers={"authorization": header} if header else {})

    for header in ("Bearer nope", "Bearer " + next(iter(KEYS)) + "x", "Basic abc", ""):
        counted.clear()
        response = asyncio.run(get(header))
        assert response.status_code == 401
        expected = len(KEYS) if header.startswith("Bearer ") else 0
        assert len(counted) == expected, header
