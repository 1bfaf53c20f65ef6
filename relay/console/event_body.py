"""The body an event sent, shown on a run's page beside the event's delivery attempts."""

from __future__ import annotations

import json

from relay.console.html import Safe, render


def block(body: str) -> Safe:
    """The stored webhook body (what every attempt sent), pretty-printed and escaped, folded."""
    try:
        shown = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        shown = body
    return render(
        '<details class="event-body"><summary>body sent ($n bytes)</summary><pre>$b</pre>'
        "</details>",
        n=len(body.encode()),
        b=shown,
    )
