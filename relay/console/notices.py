"""Console page of notices: what the relay did or saw by itself that the tenant can fix (a
subscription it disabled, vendor credentials refused, a watch listing it could not page through;
relay/ops/notices), counted and paged. Each kind is kept once per fault and period."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from relay.console import session as sessions
from relay.console.html import Safe, join, render, ts
from relay.console.pages import bad_filter, deps, page, pager
from relay.ops import notices
from relay.ops.errors import Invalid
from relay.ops.paging import offset_of

PAGE_SIZE = 50


def _about(n: dict[str, object]) -> Safe:
    """What a notice is about: a subscription (linked), a run (linked), a watch or a vendor."""
    if n.get("subscription_id"):
        return render(
            '<a class="mono" href="/console/subscriptions/$id">$id</a>', id=n["subscription_id"]
        )
    if n.get("watch_id"):
        return render('watch <span class="mono">$id</span>', id=n["watch_id"])
    if n.get("run_id"):
        return render(
            '$provider (first seen on <a class="mono" href="/console/runs/$id">$id</a>)',
            provider=n.get("provider") or "",
            id=n["run_id"],
        )
    return render("$provider", provider=n.get("provider") or "")


async def notices_page(request: Request, s: sessions.Session) -> Response:
    try:
        offset = offset_of(request.query_params.get("cursor"))
    except Invalid as exc:
        return bad_filter(
            s, "Notices", exc.message, "/console/notices", "Back to the newest notices", "notices"
        )
    found = await notices.page(deps(request), s.tenant, offset=offset, limit=PAGE_SIZE)
    rows = join(
        render(
            '<tr class="notice"><td>$at</td><td>$type</td><td>$about</td><td>$reason</td></tr>',
            at=ts(n.get("at")),
            type=n.get("type") or "",
            about=_about(n),
            reason=n.get("reason") or "",
        )
        for n in found.data
    )
    if not found.data:
        rows = Safe('<tr><td colspan="4" class="muted">No notices.</td></tr>')
    nav = pager(
        "/console/notices",
        {},
        what="Notices",
        first=found.offset + 1,
        shown=len(found.data),
        total=found.total,
        newer={"cursor": found.prev_cursor} if found.prev_cursor is not None else None,
        older={"cursor": found.next_cursor} if found.next_cursor else None,
    )
    body = render(
        '<h1>Notices</h1><p class="muted">What the relay did or saw by itself that you can '
        "fix (a subscription it disabled, vendor credentials refused, a watch listing it could "
        "not page through), newest first; each fault is told once per period, not once per "
        "run or delivery.</p>$nav"
        "<table><thead><tr><th>time</th><th>type</th><th>about</th><th>reason</th></tr>"
        "</thead><tbody>$rows</tbody></table>",
        nav=nav,
        rows=rows,
    )
    return page("Notices", body, s, active="notices")
