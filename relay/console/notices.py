"""Console page of notices: what the relay did or saw by itself that the tenant can fix (a
subscription it disabled, vendor credentials refused, a watch listing it could not page through;
relay/ops/notices), grouped by kind and object with a count and the first and last time, each
linked to its object, paged; and acknowledging them (POST, one timestamp per tenant)."""

from __future__ import annotations

import math
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from relay.console import session as sessions
from relay.console.html import Safe, badge, join, render, ts
from relay.console.pages import bad_filter, deps, flash_of, form_of, page, pager, post_button
from relay.ops import notices
from relay.ops.errors import Invalid
from relay.ops.paging import offset_of

PAGE_SIZE = 50


def _about(g: dict[str, Any]) -> Safe:
    """What a group is about, linked: a subscription, a watch, or a vendor (its connection);
    the run it was first seen on when the notice names one."""
    latest = g["latest"]
    run = Safe("")
    if latest.get("run_id"):
        run = render(
            '<br><span class="muted">run <a class="mono" href="/console/runs/$id">$id</a></span>',
            id=latest["run_id"],
        )
    if g.get("subscription_id"):
        link = render(
            'subscription <a class="mono" href="/console/subscriptions/$id">$id</a>',
            id=g["subscription_id"],
        )
    elif g.get("watch_id"):
        link = render('watch <a class="mono" href="/console/watches#$id">$id</a>', id=g["watch_id"])
    else:
        link = render(
            'vendor <a href="/console/connections">$provider</a>', provider=g.get("provider") or "-"
        )
    return render("$link$run", link=link, run=run)


async def notices_page(request: Request, s: sessions.Session) -> Response:
    try:
        offset = offset_of(request.query_params.get("cursor"))
    except Invalid as exc:
        return bad_filter(
            s, "Notices", exc.message, "/console/notices", "Back to the newest notices", "notices"
        )
    found, until = await notices.grouped(deps(request), s.tenant, offset=offset, limit=PAGE_SIZE)
    rows = join(
        render(
            '<tr class="notice" data-acknowledged="$ack"><td>$type</td><td>$about</td>'
            '<td class="num">$count</td><td>$first</td><td>$last</td><td>$reason</td>'
            "<td>$state</td></tr>",
            ack="1" if g["acknowledged"] else "0",
            type=g["type"] or "",
            about=_about(g),
            count=g["count"],
            first=ts(g["first_at"]),
            last=ts(g["last_at"]),
            reason=g["latest"].get("reason") or "",
            state=badge("acknowledged", "muted") if g["acknowledged"] else badge("new", "warn"),
        )
        for g in found.data
    )
    if not found.data:
        rows = Safe('<tr><td colspan="7" class="muted">No notices.</td></tr>')
    nav = pager(
        "/console/notices",
        {},
        what="Notice groups",
        first=found.offset + 1,
        shown=len(found.data),
        total=found.total,
        newer={"cursor": found.prev_cursor} if found.prev_cursor is not None else None,
        older={"cursor": found.next_cursor} if found.next_cursor else None,
    )
    newest = max((g["last_at"] for g in found.data if not g["acknowledged"]), default=0.0)
    ack = Safe("")
    if newest:
        ack = post_button(
            s,
            "/console/notices/acknowledge",
            f"Acknowledge notices up to {ts(newest)}",
            cls="primary",
            fields={"until": repr(newest)},
            name="acknowledge",
        )
    acked = render('<p class="muted">Acknowledged up to $t.</p>', t=ts(until)) if until else ""
    body = render(
        '<h1>Notices</h1><p class="muted">What the relay did or saw by itself that you can '
        "fix (a subscription it disabled, vendor credentials refused, a watch listing it could "
        "not page through), grouped by kind and object, the latest first; each fault is told "
        "once per period, not once per run or delivery.</p>"
        '<div class="actions">$ack</div>$acked$nav'
        "<table><thead><tr><th>type</th><th>about</th><th>count</th><th>first</th>"
        "<th>last</th><th>latest reason</th><th>state</th></tr>"
        "</thead><tbody>$rows</tbody></table>",
        ack=ack,
        acked=acked,
        nav=nav,
        rows=rows,
    )
    return page("Notices", body, s, active="notices", flash=flash_of(request))


async def acknowledge(request: Request, s: sessions.Session) -> Response:
    """Acknowledge up to the newest notice the page showed (one that came after stays new)."""
    raw = form_of(request).get("until") or ""
    try:
        until = float(raw) if raw else None
    except ValueError:
        until = math.nan
    if until is not None and not (math.isfinite(until) and until >= 0):
        raise Invalid("until", "until: must be unix seconds")
    await notices.acknowledge(deps(request), s.tenant, until)
    return RedirectResponse("/console/notices?done=acknowledged", 303)
