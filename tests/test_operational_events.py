"""Operational events (issue 25): a tenant's notices as webhooks, to the subscriptions whose
`filter.event_types` names them. Real stack: an endpoint answering 410 is disabled, and the
tenant's subscription that asked for `subscription.disabled` receives one signed event naming it,
through the same keep-once gate as the notice; the subscriptions that did not ask, and the one
that was disabled, receive nothing of it."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import standardwebhooks
from svix.webhooks import Webhook as SvixWebhook

from relay.api.app import openapi_document
from relay.delivery import events
from relay.delivery.webhook_schemas import body_validator
from tests.support.receiver import Receiver
from tests.support.stack import Stack, subscribe, unique, wait_for

TENANT = "t3"


def _start(api: httpx.Client) -> str:
    response = api.post(
        "/v1/runs",
        json={"provider": "citedy", "input": {"domain": f"{unique('d')}.example"}},
        headers={"Idempotency-Key": unique("ops")},
    )
    assert response.status_code == 202, response.text
    run_id: str = response.json()["id"]
    return run_id


def _types(receiver: Receiver, hook: str) -> list[str]:
    return [e["type"] for e in receiver.events(hook)]


def test_a_disabled_endpoint_is_told_to_the_subscriptions_that_asked(
    stack: Stack, receiver: Receiver
) -> None:
    gone, ops, plain, other_ops = (unique(n) for n in ("gone", "ops", "plain", "otherops"))
    receiver.plan(gone, 410, default=204)
    with stack.client(TENANT) as api:
        # The endpoint that goes away asks for the operational event too: it must never be told
        # about its own disabling (its lane is parked, and would deliver it on re-enable).
        doomed = subscribe(
            api,
            receiver.url(gone),
            filter={"event_types": ["run.status_changed", "subscription.disabled"]},
        )
        told = subscribe(api, receiver.url(ops), filter={"event_types": ["subscription.disabled"]})
        # Run events by default: operational events only when named.
        subscribe(api, receiver.url(plain))
        # Asked for another operational event, not this one.
        subscribe(api, receiver.url(other_ops), filter={"event_types": ["vendor.unauthorized"]})
        # Several runs at once: several lanes meet the 410 (two workers), one notice, one event.
        runs = [_start(api) for _ in range(3)]
        wait_for(
            lambda: api.get(f"/v1/subscriptions/{doomed['id']}").json()["enabled"] is False,
            what="disabled by 410",
        )
        wait_for(lambda: len(receiver.got(ops)) >= 1, what="the operational event")
        for run_id in runs:
            wait_for(
                lambda run_id=run_id: api.get(f"/v1/runs/{run_id}").json()["state"] == "completed",
                timeout=30,
            )
        wait_for(lambda: len(receiver.got(plain)) >= 15, what="the run events to plain")
        time.sleep(1.0)
        notices = api.get("/v1/notices", params={"limit": 200}).json()["data"]

        hits = receiver.got(ops)
        assert len(hits) == 1, [h.json for h in hits]
        event = hits[0].json
        assert event["type"] == "subscription.disabled"
        assert event["data"]["subscription_id"] == doomed["id"]
        assert "410" in event["data"]["reason"]
        headers = {k: v for k, v in hits[0].headers.items() if k.startswith("webhook-")}
        standardwebhooks.Webhook(told["secret"]).verify(hits[0].body, headers)
        SvixWebhook(told["secret"]).verify(hits[0].body, headers)
        body_validator(openapi_document(), "SubscriptionDisabled").validate(event)
        # The same gate as the notice: one notice for the subscription, one event.
        mine = [
            n
            for n in notices
            if n["type"] == "subscription.disabled" and n["subscription_id"] == doomed["id"]
        ]
        assert len(mine) == 1
        assert event["data"]["at"] == mine[0]["at"]

        assert "subscription.disabled" not in _types(receiver, plain)
        assert _types(receiver, plain) == ["run.status_changed"] * 15
        assert receiver.got(other_ops) == []

        # Enabled again, the disabled endpoint gets what waited for it: its run events only.
        patched = api.patch(f"/v1/subscriptions/{doomed['id']}", json={"enabled": True})
        assert patched.status_code == 200
        wait_for(
            lambda: sum(h.succeeded for h in receiver.got(gone)) >= 15,
            timeout=30,
            what="resumed delivery",
        )
        time.sleep(1.0)
    assert set(_types(receiver, gone)) == {"run.status_changed"}
    assert len(receiver.got(ops)) == 1


def test_operational_events_are_published_and_opt_in() -> None:
    """Each notice type is an event type with its body's schema in `/openapi.json` `webhooks`,
    and a subscription's filter accepts it."""
    doc: dict[str, Any] = openapi_document()
    mapping = doc["components"]["schemas"]["WebhookEvent"]["discriminator"]["mapping"]
    for event_type in events.OPERATIONAL_TYPES:
        assert event_type in doc["webhooks"]
        assert event_type in mapping
    listed = doc["components"]["schemas"]["SubscriptionFilter"]["properties"]["event_types"]
    assert set(events.OPERATIONAL_TYPES) <= set(listed["items"]["enum"])
    body = events.notice_body(
        {"type": "subscription.disabled", "subscription_id": "sub_x", "reason": "gone", "at": 1.5}
    )
    body_validator(doc).validate(json.loads(body))
