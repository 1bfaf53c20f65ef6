"""Our signatures must verify with the reference libraries unchanged: that is the whole promise
made to subscribers, so it is checked against both `standardwebhooks` and `svix`."""

from __future__ import annotations

import base64
import json
import time

import pytest
import standardwebhooks
import svix.webhooks

from relay.delivery import signing

BODY = json.dumps({"type": "ping", "data": {"n": 1, "text": "héllo"}}).encode()


def _library_verifies(secret: str, headers: dict[str, str], body: bytes) -> bool:
    results = []
    checks = (
        # json_parse=False: only the signature is under test, bodies here need not be JSON.
        lambda: standardwebhooks.Webhook(secret).verify(body, headers, json_parse=False),
        lambda: svix.webhooks.Webhook(secret).verify(body, headers),
    )
    for check in checks:
        try:
            check()
            results.append(True)
        except (standardwebhooks.WebhookVerificationError, svix.webhooks.WebhookVerificationError):
            results.append(False)
    assert results[0] == results[1], "the two reference libraries disagree"
    return results[0]


def test_new_secret_shape() -> None:
    secret = signing.new_secret()
    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret[len("whsec_") :])) <= 32
    assert signing.new_secret() != secret


@pytest.mark.parametrize("body", [BODY, b"", b"{}", b"x" * 100_000])
def test_signature_verifies_with_both_libraries(body: bytes) -> None:
    secret = signing.new_secret()
    headers = signing.webhook_headers([secret], "evt_123", int(time.time()), body)
    assert headers["content-type"] == "application/json"
    assert headers["webhook-id"] == "evt_123"
    assert _library_verifies(secret, headers, body)
    assert signing.verify(secret, headers, body)


def test_known_vector_matches_standardwebhooks_sign() -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    ours = signing.sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}')
    assert ours == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_rotation_header_verifies_with_either_secret() -> None:
    old, new = signing.new_secret(), signing.new_secret()
    headers = signing.webhook_headers([new, old], "evt_rot", int(time.time()), BODY)
    parts = headers["webhook-signature"].split(" ")
    assert len(parts) == 2
    assert parts[0] == signing.sign(new, "evt_rot", int(headers["webhook-timestamp"]), BODY)
    for secret in (old, new):
        assert _library_verifies(secret, headers, BODY)
        assert signing.verify(secret, headers, BODY)
    stranger = signing.new_secret()
    assert not _library_verifies(stranger, headers, BODY)
    assert not signing.verify(stranger, headers, BODY)


def test_duplicate_secret_signs_once() -> None:
    secret = signing.new_secret()
    assert " " not in signing.signature_header([secret, secret], "evt", 1, BODY)
    with pytest.raises(ValueError):
        signing.signature_header([], "evt", 1, BODY)


def test_tampering_fails_everywhere() -> None:
    secret = signing.new_secret()
    ts = int(time.time())
    headers = signing.webhook_headers([secret], "evt_t", ts, BODY)
    tampered_body = BODY.replace(b"1", b"2")
    assert not _library_verifies(secret, headers, tampered_body)
    assert not signing.verify(secret, headers, tampered_body)

    moved = {**headers, "webhook-timestamp": str(ts + 1)}
    assert not _library_verifies(secret, moved, BODY)
    assert not signing.verify(secret, moved, BODY)

    renamed = {**headers, "webhook-id": "evt_other"}
    assert not _library_verifies(secret, renamed, BODY)
    assert not signing.verify(secret, renamed, BODY)


def test_stale_and_future_timestamps_fail_everywhere() -> None:
    secret = signing.new_secret()
    for ts in (int(time.time()) - 3600, int(time.time()) + 3600):
        headers = signing.webhook_headers([secret], "evt_old", ts, BODY)
        assert not _library_verifies(secret, headers, BODY)
        assert not signing.verify(secret, headers, BODY)
        assert signing.verify(secret, headers, BODY, now=ts)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"webhook-id": "e", "webhook-timestamp": "abc", "webhook-signature": "v1,AAAA"},
        {"webhook-id": "e", "webhook-timestamp": "1", "webhook-signature": "garbage"},
        {"webhook-id": "e", "webhook-timestamp": "1", "webhook-signature": "v1,!!!not-base64"},
        {"webhook-id": "e", "webhook-timestamp": "1", "webhook-signature": "v2,AAAA"},
    ],
)
def test_verify_rejects_malformed_headers_without_raising(headers: dict[str, str]) -> None:
    assert not signing.verify(signing.new_secret(), headers, BODY, now=1)


def test_verify_reads_headers_case_insensitively_and_svix_names() -> None:
    secret = signing.new_secret()
    ts = int(time.time())
    headers = signing.webhook_headers([secret], "evt_c", ts, BODY)
    upper = {k.upper(): v for k, v in headers.items()}
    assert signing.verify(secret, upper, BODY)
    svix_named = {k.replace("webhook-", "svix-"): v for k, v in headers.items()}
    assert signing.verify(secret, svix_named, BODY)
    svix.webhooks.Webhook(secret).verify(BODY, svix_named)


def test_unprefixed_and_unpadded_secret_agree_with_library() -> None:
    raw = base64.b64encode(b"k" * 25).decode().rstrip("=")
    headers = signing.webhook_headers([raw], "evt_u", int(time.time()), BODY)
    assert _library_verifies(raw, headers, BODY)
    assert signing.verify(raw, headers, BODY)
