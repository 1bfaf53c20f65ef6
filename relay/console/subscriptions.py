"""Console pages of subscriptions: the list, one subscription with its dead letters and attempt
log, and its actions (enable, disable, rotate secret, send test, recover). Each action is one
operation of relay/ops, the same one the JSON API calls."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from relay.console import session as sessions
from relay.console.html import Safe, badge, join, render, ts
from relay.console.pages import (
    attempts_table,
    csrf_field,
    deps,
    flash_of,
    form_of,
    page,
    post_button,
)
from relay.ops import deliveries, subscriptions
from relay.ops.errors import Invalid
from relay.ops.inputs import SubscriptionPatch

ATTEMPTS_SHOWN = 100


async def list_page(request: Request, s: sessions.Session) -> Response:
    subs = await subscriptions.list_all(deps(request), s.tenant)
    dead = await deliveries.dead_counts(deps(request), s.tenant)
    rows = join(
        render(
            '<tr><td><a class="mono" href="/console/subscriptions/$id">$id</a></td>'
            '<td>$desc</td><td class="mono">$url</td><td>$state</td><td>$failing</td>'
            '<td class="num">$dead</td><td>$created</td></tr>',
            id=sub["id"],
            desc=sub["description"],
            url=sub["url"],
            state=badge("enabled" if sub["enabled"] else "disabled"),
            failing=ts(sub["failing_since"]),
            dead=dead.get(sub["id"], 0),
            created=ts(sub["created_at"]),
        )
        for sub in subs
    )
    if not subs:
        rows = Safe('<tr><td colspan="7" class="muted">No subscriptions.</td></tr>')
    body = render(
        "<h1>Subscriptions</h1><table><thead><tr><th>subscription</th><th>description</th>"
        "<th>url</th><th>state</th><th>failing since</th><th>dead letters</th><th>created</th>"
        "</tr></thead><tbody>$rows</tbody></table>",
        rows=rows,
    )
    return page("Subscriptions", body, s, active="subs", flash=flash_of(request))


def _since_default(now: float) -> str:
    return datetime.fromtimestamp(now - 86400, UTC).strftime("%Y-%m-%dT%H:%M")


def _dead_table(s: sessions.Session, sub_id: str, dead: list[deliveries.DeadLetter]) -> Safe:
    if not dead:
        return Safe('<p class="muted">None.</p>')
    rows = join(
        render(
            '<tr class="dead"><td class="mono">$event</td><td>$run</td><td>$at</td><td>$btn</td>'
            "</tr>",
            event=d.event_id,
            run=render('<a class="mono" href="/console/runs/$r">$r</a>', r=d.run_id)
            if d.run_id != deliveries.PING_LANE
            else "ping",
            at=ts(d.dead_at),
            btn=post_button(
                s,
                f"/console/events/{quote(d.event_id)}/redeliver",
                "Redeliver",
                fields={"subscription_id": sub_id},
                name="redeliver-one",
            ),
        )
        for d in dead
    )
    return render(
        "<table><thead><tr><th>event</th><th>run</th><th>dead-lettered</th><th></th></tr>"
        "</thead><tbody>$rows</tbody></table>",
        rows=rows,
    )


def _actions(s: sessions.Session, sub_id: str, enabled: bool) -> Safe:
    base = f"/console/subscriptions/{quote(sub_id)}"
    toggle = (
        post_button(s, f"{base}/disable", "Disable", cls="danger")
        if enabled
        else post_button(s, f"{base}/enable", "Enable", cls="primary")
    )
    test = post_button(s, f"{base}/test", "Send test", name="test") if enabled else Safe("")
    recover = render(
        '<form method="post" action="$base/recover">$csrf'
        '<div><label for="since">dead-lettered since (UTC)</label>'
        '<input id="since" name="since" type="datetime-local" step="1" value="$since"></div>'
        '<button type="submit" class="primary" data-action="recover">Recover failed</button>'
        "</form>",
        base=base,
        csrf=csrf_field(s),
        since=_since_default(time.time()),
    )
    rotate = post_button(s, f"{base}/rotate-secret", "Rotate secret", name="rotate")
    return join([toggle, rotate, test, recover])


async def _sub(request: Request, s: sessions.Session, secret: str | None = None) -> Response:
    d = deps(request)
    sub_id = request.path_params["sub_id"]
    pub = await subscriptions.get(d, s.tenant, sub_id)
    event_filter = request.query_params.get("event_id") or None
    log = await deliveries.attempts(
        d,
        s.tenant,
        sub_id,
        limit=d.settings.attempt_retention if event_filter else ATTEMPTS_SHOWN,
        event_id=event_filter,
    )
    dead = await deliveries.dead_letters(d, s.tenant, sub_id)
    secret_html = Safe("")
    if secret is not None:
        secret_html = render(
            '<div class="card"><h2 style="margin-top:0">New signing secret</h2>'
            "<p>Shown once: store it now. The previous secret keeps signing beside it until "
            '$until.</p><p class="secret mono" id="new-secret">$secret</p></div>',
            secret=secret,
            until=ts(time.time() + d.settings.secret_grace),
        )
    flt = pub["filter"] or {}
    body = render(
        '<h1>Subscription <span class="mono">$id</span></h1>$secret_html'
        '<div class="card"><dl class="kv">'
        '<dt>description</dt><dd>$desc</dd><dt>url</dt><dd class="mono">$url</dd>'
        "<dt>state</dt><dd>$state $reason</dd><dt>failing since</dt><dd>$failing</dd>"
        "<dt>filter</dt><dd>providers: $providers · statuses: $statuses · types: $types</dd>"
        "<dt>kind</dt><dd>$kind</dd><dt>created</dt><dd>$created</dd></dl></div>"
        '<div class="card actions">$actions</div>'
        "<h2>Dead letters</h2>$dead"
        "<h2>Attempt log$filtered</h2>$attempts",
        id=pub["id"],
        secret_html=secret_html,
        desc=pub["description"],
        url=pub["url"],
        state=badge("enabled" if pub["enabled"] else "disabled"),
        reason=pub["disabled_reason"] or "",
        failing=ts(pub["failing_since"]) or "-",
        providers=", ".join(flt.get("providers") or []) or "any",
        statuses=", ".join(flt.get("statuses") or []) or "any",
        types=", ".join(flt.get("event_types") or []) or "any",
        kind=pub["kind"],
        created=ts(pub["created_at"]),
        actions=_actions(s, pub["id"], pub["enabled"]),
        dead=_dead_table(s, pub["id"], dead),
        filtered=render(" for event $e", e=event_filter) if event_filter else "",
        attempts=attempts_table(log.data, show_event=True),
    )
    return page(f"Subscription {pub['id']}", body, s, active="subs", flash=flash_of(request))


async def sub_page(request: Request, s: sessions.Session) -> Response:
    return await _sub(request, s)


def _back(sub_id: str, done: str, n: int | None = None) -> RedirectResponse:
    suffix = f"&n={n}" if n is not None else ""
    return RedirectResponse(f"/console/subscriptions/{quote(sub_id)}?done={done}{suffix}", 303)


async def _set_enabled(request: Request, s: sessions.Session, on: bool) -> Response:
    sub = await subscriptions.patch(
        deps(request),
        s.tenant,
        request.path_params["sub_id"],
        SubscriptionPatch(enabled=on),
        by="in the console",
    )
    return _back(sub["id"], "enabled" if on else "disabled")


async def enable(request: Request, s: sessions.Session) -> Response:
    return await _set_enabled(request, s, True)


async def disable(request: Request, s: sessions.Session) -> Response:
    return await _set_enabled(request, s, False)


async def rotate(request: Request, s: sessions.Session) -> Response:
    rotated = await subscriptions.rotate_secret(
        deps(request), s.tenant, request.path_params["sub_id"]
    )
    return await _sub(request, s, secret=rotated.secret)


async def test(request: Request, s: sessions.Session) -> Response:
    await subscriptions.send_test(deps(request), s.tenant, request.path_params["sub_id"])
    return _back(request.path_params["sub_id"], "test")


def parse_since(raw: str) -> float | None:
    """The recover form's time: empty (everything), unix seconds, or an ISO date-time (UTC)."""
    raw = raw.strip()
    if not raw:
        return 0.0
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(raw.rstrip("Z"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


async def recover(request: Request, s: sessions.Session) -> Response:
    d, sub_id = deps(request), request.path_params["sub_id"]
    since = parse_since(form_of(request).get("since", ""))
    if since is None:
        await subscriptions.get(d, s.tenant, sub_id)  # another tenant's id stays a 404
        raise Invalid("since", "since: give a date and time (UTC).")
    done = await deliveries.recover(d, s.tenant, sub_id, since)
    return _back(sub_id, "recovered", done.recovered)
