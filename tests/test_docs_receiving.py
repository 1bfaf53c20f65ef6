"""docs/receiving.md's hand recipes, run as written: the `openssl` verification must compute the
signature the relay's signer (relay/delivery/signing.py) sends, and the `curl` sender must produce a
request the relay's verifier and the `standardwebhooks` library accept."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relay.delivery import signing
from tests.support.markdown import tagged
from tests.support.servers import serve_in_thread

DOC = Path(__file__).resolve().parents[1] / "docs" / "receiving.md"


def bash(script: str, cwd: Path, **env: str) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


BODIES = [
    b'{"type":"ping","data":{}}',
    # what the relay really sends: compact JSON, non-ASCII kept as UTF-8, a trailing newline
    '{"type":"run.status_changed","data":{"run":{"metadata":{"name":"Zoë — Ünïcode"}}}}\n'.encode(),
    b'{"a": "two\nlines", "b": "back\\\\slash %s %d"}',
]


@pytest.mark.parametrize("body", BODIES)
def test_openssl_recipe_computes_the_relay_signature(tmp_path: Path, body: bytes) -> None:
    block = tagged(DOC, "openssl-verify")
    assert block.lang == "sh"
    secret = signing.new_secret()
    msg_id, timestamp = "evt_3f9c2a7b1d", 1795582344
    (tmp_path / "body.json").write_bytes(body)
    out = bash(
        block.text, tmp_path, SECRET=secret, WEBHOOK_ID=msg_id, WEBHOOK_TIMESTAMP=str(timestamp)
    )
    expected = signing.sign(secret, msg_id, timestamp, body)
    assert out.strip().splitlines()[-1] == expected
    # and it is one of the entries the relay puts in webhook-signature during a rotation
    old = signing.new_secret()
    header = signing.signature_header([secret, old], msg_id, timestamp, body)
    assert expected in header.split(" ")
    # the doc's warning holds: the text after whsec_ used as the key gives another signature
    signed = f"{msg_id}.{timestamp}.".encode() + body
    wrong_key = secret.removeprefix("whsec_").encode()
    text_key = base64.b64encode(hmac.new(wrong_key, signed, hashlib.sha256).digest()).decode()
    assert "v1," + text_key != expected


def test_curl_recipe_sends_a_request_the_relay_verifier_accepts(tmp_path: Path) -> None:
    block = tagged(DOC, "curl-send")
    received: list[tuple[dict[str, str], bytes]] = []

    async def hook(request: Request) -> Response:
        received.append((dict(request.headers), await request.body()))
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/webhooks", hook, methods=["POST"])])
    secret = signing.new_secret()
    with serve_in_thread(app) as base:
        out = bash(block.text, tmp_path, SECRET=secret, URL=f"{base}/webhooks")
    assert '"ok":true' in out
    ((headers, body),) = received
    assert headers["content-type"] == "application/json"
    assert signing.verify(secret, headers, body)
    event: Any = Webhook(secret).verify(body, headers)
    assert event["type"] == "ping"
    # a receiver holding another secret refuses it: the check above can fail
    assert not signing.verify(signing.new_secret(), headers, body)


def test_the_documented_tolerance_is_the_relays() -> None:
    text = DOC.read_text()
    assert signing.DEFAULT_TOLERANCE == 300
    assert "5 minutes (300 s)" in text
    assert "`whsec_` prefix removed, **base64-decoded**" in text
    assert "{webhook-id}.{webhook-timestamp}.{body}" in text
