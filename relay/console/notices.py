"""Console page of notices: what the relay did or saw by itself that the tenant can fix (a
subscription it disabled, vendor credentials refused, a watch listing it could not page through;
relay/ops/notices)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from relay.console import session as sessions
from relay.console.html import Safe, join, render, ts
from relay.console.pages import deps, page
from relay.ops import notices


def _about(n: dict[str, object]) -> Safe:
    """What a notice is about: a subscription (linked), a watch (linked) or a vendor."""
    if n.get("subscription_id"):
        return render(
            '<a class="mono" href="/console/subscriptions/$id">$id</a>', id=n["subscription_id"]
        )
    if n.get("watch_id"):
        return render("watch <span class=\"mono\">$id</span>", id=n["watch_id"])
    return render("$provider", provider=n.get("provider") or "")


async def notices_page(request: Request, s: sessions.Session) -> Response:
    found = await notices.list_all(deps(request), s.tenant)
    rows = join(
        render(
            "<tr><td>$at</td><td>$type</td><td>$about</td><td>$reason</td></tr>",
            at=ts(n.get("at")),
            type=n.get("type") or "",
            about=_about(n),
            reason=n.get("reason") or "",
        )
        for n in found
    )
    if not found:
        rows = Safe('<tr><td colspan="4" class="muted">No notices.</td></tr>')
    body = render(
        '<h1>Notices</h1><p class="muted">What the relay did or saw by itself that you can '
        "fix (a subscription it disabled, vendor credentials refused, a watch listing it could "
        'not page through), newest first.</p>'
        "<table><thead><tr><th>time</th><th>type</th><th>about</th><th>reason</th></tr>"
        "</thead><tbody>$rows</tbody></table>",
        rows=rows,
    )
    return page("Notices", body, s, active="notices")
