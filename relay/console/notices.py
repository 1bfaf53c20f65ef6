"""Console page of notices: the subscriptions the relay disabled by itself (relay/ops/notices)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from relay.console import session as sessions
from relay.console.html import Safe, join, render, ts
from relay.console.pages import deps, page
from relay.ops import notices


async def notices_page(request: Request, s: sessions.Session) -> Response:
    found = await notices.list_all(deps(request), s.tenant)
    rows = join(
        render(
            '<tr><td>$at</td><td>$type</td><td><a class="mono" '
            'href="/console/subscriptions/$sub">$sub</a></td><td>$reason</td></tr>',
            at=ts(n.get("at")),
            type=n.get("type") or "",
            sub=n.get("subscription_id") or "",
            reason=n.get("reason") or "",
        )
        for n in found
    )
    if not found:
        rows = Safe('<tr><td colspan="4" class="muted">No notices.</td></tr>')
    body = render(
        '<h1>Notices</h1><p class="muted">Subscriptions the relay disabled, newest first.</p>'
        "<table><thead><tr><th>time</th><th>type</th><th>subscription</th><th>reason</th></tr>"
        "</thead><tbody>$rows</tbody></table>",
        rows=rows,
    )
    return page("Notices", body, s, active="notices")
