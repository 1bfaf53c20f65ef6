"""Live refresh of a console page (the run page, the deliveries log): off by default, turned on
by a link that adds `live=1`, which makes the page reload itself every `EVERY` seconds with a
`<meta http-equiv="refresh">`, so no script runs and the CSP stays as tight as it is
(`script-src 'self'; connect-src 'none'`). The link beside it turns it off again (WCAG 2.2.1:
the user controls the timing)."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.requests import Request

from relay.console.html import Safe, render

EVERY = 5
#: Query parameters a reload must not carry: a POST's one-time message.
DROPPED = ("live", "done", "n", "id")


def is_on(request: Request) -> bool:
    return request.query_params.get("live") == "1"


def head(request: Request) -> Safe:
    """The `<meta>` that reloads the page, when live refresh is on."""
    if not is_on(request):
        return Safe("")
    return render('<meta http-equiv="refresh" content="$s">', s=EVERY)


def toggle(request: Request) -> Safe:
    """The link that turns live refresh on or off, keeping the page's other parameters."""
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in DROPPED]
    on = is_on(request)
    if not on:
        kept.append(("live", "1"))
    href = request.url.path + ("?" + urlencode(kept) if kept else "")
    return render(
        '<p class="live" data-live="$state"><span class="muted">$said</span> '
        '<a href="$href" data-action="live">$label</a></p>',
        state="on" if on else "off",
        said=f"Live: this page reloads every {EVERY} s." if on else "",
        href=href,
        label="Stop live refresh" if on else f"Live refresh (every {EVERY} s)",
    )
