"""The console's run page shows each event's body (what was sent) beside its attempts, escaped."""

from __future__ import annotations

import html
import json

from tests.support.receiver import Receiver
from tests.support.stack import Stack, subscribe, unique, wait_for
from tests.test_console import console


def test_run_page_shows_each_event_body_escaped(stack: Stack, receiver: Receiver) -> None:
    hook = unique("body")
    marker = "<script>alert('x')</script>"
    with stack.client() as api:
        subscribe(api, receiver.url(hook))
        run = api.post(
            "/v1/runs",
            json={
                "provider": "citedy",
                "input": {"domain": f"{unique('cb')}.example"},
                "metadata": {"note": marker},
            },
        ).json()
        wait_for(lambda: len(receiver.got(hook)) >= 5, timeout=30, what="5 deliveries")
    with console(stack) as client:
        page = client.get(f"/console/runs/{run['id']}").text
    assert marker not in page  # escaped, never markup
    assert page.count('class="event-body"') == 5
    sent = receiver.got(hook)[-1]
    shown = json.dumps(sent.json, indent=2, ensure_ascii=False)
    assert html.escape(shown, quote=True) in page  # exactly what the last attempt sent
