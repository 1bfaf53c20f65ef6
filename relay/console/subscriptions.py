"""Console pages of subscriptions: the list with each one's delivery health, one subscription
with its dead letters and attempt log (both counted and paged), create / edit / delete, and its
actions (enable, disable, rotate secret, send test, recover). Each action is one operation of
relay/ops, the same one the JSON API calls; the irreversible ones (disable, rotate, delete, and
recover into an endpoint still failing) have a confirmation page first, and every POST answers
with a redirect (a refresh never repeats it)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from relay.console import session as sessions
from relay.console.html import Safe, join, render, ts
from relay.console.pages import (
    attempts_table,
    bad_filter,
    confirm_page,
    csrf_field,
    deps,
    flash_of,
    form_of,
    health_badge,
    link_button,
    page,
    pager,
    post_button,
    session_store,
    success_rate,
)
from relay.ops import deliveries, subscriptions
from relay.ops.errors import Conflict, Invalid
from relay.ops.inputs import SubscriptionPatch
from relay.ops.paging import offset_of

PAGE_SIZE = 50


def sub_path(sub_id: str) -> str:
    return f"/console/subscriptions/{quote(sub_id)}"


# ------------------------------------------------------------------------------------ the list


async def list_page(request: Request, s: sessions.Session) -> Response:
    found = await deliveries.overview(deps(request), s.tenant)
    rows = join(
        render(
            '<tr class="sub" data-health="$state"><td><a class="mono" '
            'href="/console/subscriptions/$id">$id</a></td><td>$desc</td>'
            '<td class="mono">$url</td><td>$health</td><td>$rate</td>'
            '<td class="num">$dead</td><td>$created</td></tr>',
            id=sub["id"],
            state=h.state,
            desc=sub["description"],
            url=sub["url"],
            health=health_badge(h),
            rate=success_rate(h),
            dead=h.dead,
            created=ts(sub["created_at"]),
        )
        for sub, h in found
    )
    if not found:
        rows = Safe('<tr><td colspan="7" class="muted">No subscriptions.</td></tr>')
    body = render(
        '<div class="actions"><h1>Subscriptions</h1>$new</div>'
        "<table><thead><tr><th>subscription</th><th>description</th><th>url</th>"
        "<th>health</th><th>success rate</th><th>dead letters</th><th>created</th>"
        "</tr></thead><tbody>$rows</tbody></table>",
        new=link_button(
            "/console/subscriptions/new", "New subscription", cls="primary", name="new"
        ),
        rows=rows,
    )
    return page("Subscriptions", body, s, active="subs", flash=flash_of(request))


# ----------------------------------------------------------------------- create, edit, delete


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
                cls="small",
                fields={"subscription_id": sub_id},
                name="redeliver-one",
                aria=f"Redeliver {d.event_id} to {sub_id}",
            ),
        )
        for d in dead
    )
    return render(
        "<table><thead><tr><th>event</th><th>run</th><th>dead-lettered</th><th>action</th></tr>"
        "</thead><tbody>$rows</tbody></table>",
        rows=rows,
    )


def _actions(s: sessions.Session, sub_id: str, enabled: bool) -> Safe:
    base = sub_path(sub_id)
    toggle = (
        link_button(f"{base}/disable", "Disable", cls="danger", name="disable")
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
    return join(
        [
            link_button(f"{base}/edit", "Edit", name="edit"),
            toggle,
            link_button(f"{base}/rotate-secret", "Rotate secret", name="rotate"),
            test,
            link_button(f"{base}/delete", "Delete", cls="danger", name="delete"),
            recover,
        ]
    )


async def _secret_card(request: Request, s: sessions.Session, grace: float) -> Safe:
    token = request.query_params.get("secret")
    if token is None:
        return Safe("")
    secret = await sessions.take_flash(session_store(request), s, token)
    if secret is None:
        return Safe(
            '<div class="flash bad" role="alert">The secret was shown once already (or that '
            "was over 5 minutes ago) and is not kept: rotate it again if it was not stored."
            "</div>"
        )
    grace_text = (
        render(
            " The previous secret keeps signing beside it until $until.",
            until=ts(time.time() + grace),
        )
        if request.query_params.get("done") == "rotated"
        else ""
    )
    return render(
        '<div class="card" aria-labelledby="secret-title"><h2 id="secret-title" '
        'style="margin-top:0">Signing secret</h2><p>Shown once: store it now; a refresh will not '
        "show it again.$grace</p>"
        '<p class="secret mono" id="new-secret">$secret</p>'
        '<button type="button" data-copy="#new-secret" data-action="copy">Copy secret</button>'
        "</div>",
        grace=grace_text,
        secret=secret,
    )


async def sub_page(request: Request, s: sessions.Session) -> Response:
    d = deps(request)
    sub_id = request.path_params["sub_id"]
    q = request.query_params
    event_filter = q.get("event_id") or None
    try:
        dead_offset = offset_of(q.get("dead"))
        attempts_offset = offset_of(q.get("cursor"))
    except Invalid as exc:
        return bad_filter(
            s, "Subscription", exc.message, sub_path(sub_id), "Back to its first page", "subs"
        )
    view = await deliveries.subscription_view(
        d,
        s.tenant,
        sub_id,
        dead_offset=dead_offset,
        attempts_offset=attempts_offset,
        event_id=event_filter,
        limit=PAGE_SIZE,
    )
    pub, h = view.sub, view.health
    flt = pub["filter"] or {}
    base = sub_path(pub["id"])
    keep = {"dead": q.get("dead") or "", "cursor": q.get("cursor") or ""}
    dead_nav = pager(
        base,
        {"cursor": keep["cursor"]},
        what="Dead letters",
        first=view.dead.offset + 1,
        shown=len(view.dead.data),
        total=view.dead.total,
        newer={"dead": view.dead.prev_cursor} if view.dead.prev_cursor else None,
        older={"dead": view.dead.next_cursor} if view.dead.next_cursor else None,
    )
    log = view.attempts
    if event_filter:
        attempts_nav = render(
            '<p class="pager">$n attempt(s) of event <code>$e</code> among the newest $total. '
            '<a href="$base">All attempts</a></p>',
            n=len(log.data),
            e=event_filter,
            total=log.total,
            base=base,
        )
    else:
        prev = str(max(0, log.offset - PAGE_SIZE)) if log.offset > 0 else None
        attempts_nav = pager(
            base,
            {"dead": keep["dead"]},
            what="Attempts",
            first=log.offset + 1,
            shown=len(log.data),
            total=log.total,
            newer={"cursor": prev} if prev is not None else None,
            older={"cursor": str(log.offset + PAGE_SIZE)}
            if log.offset + PAGE_SIZE < log.total
            else None,
        )
    body = render(
        '<h1>Subscription <span class="mono">$id</span></h1>$secret'
        '<div class="card"><dl class="kv">'
        "<dt>health</dt><dd>$health $reason</dd><dt>success rate</dt><dd>$rate</dd>"
        '<dt>description</dt><dd>$desc</dd><dt>url</dt><dd class="mono">$url</dd>'
        "<dt>filter</dt><dd>providers: $providers · statuses: $statuses · types: $types</dd>"
        "<dt>extra headers</dt><dd>$headers</dd><dt>rate limit</dt><dd>$limit</dd>"
        "<dt>created</dt><dd>$created</dd></dl></div>"
        '<div class="card actions">$actions</div>'
        "<h2>Dead letters</h2>$dead_nav$dead"
        "<h2>Attempt log$filtered</h2>$attempts_nav$attempts",
        id=pub["id"],
        secret=await _secret_card(request, s, d.settings.secret_grace),
        health=health_badge(h),
        reason=h.reason or "",
        rate=success_rate(h),
        desc=pub["description"] or "-",
        url=pub["url"],
        providers=", ".join(flt.get("providers") or []) or "any",
        statuses=", ".join(flt.get("statuses") or []) or "any",
        types=", ".join(flt.get("event_types") or []) or "any",
        headers=", ".join(pub["headers"]) or "none",
        limit=f"{pub['rate_limit']:g} per second" if pub["rate_limit"] else "none",
        created=ts(pub["created_at"]),
        actions=_actions(s, pub["id"], pub["enabled"]),
        dead_nav=dead_nav,
        dead=_dead_table(s, pub["id"], view.dead.data),
        filtered=render(" for event $e", e=event_filter) if event_filter else "",
        attempts_nav=attempts_nav,
        attempts=attempts_table(log.data, show_event=True),
    )
    return page(f"Subscription {pub['id']}", body, s, active="subs", flash=flash_of(request))


# ----------------------------------------------------------------------------------- actions


def _back(sub_id: str, done: str, n: int | None = None) -> RedirectResponse:
    suffix = f"&n={n}" if n is not None else ""
    return RedirectResponse(f"{sub_path(sub_id)}?done={done}{suffix}", 303)


async def enable(request: Request, s: sessions.Session) -> Response:
    sub = await subscriptions.patch(
        deps(request),
        s.tenant,
        request.path_params["sub_id"],
        SubscriptionPatch(enabled=True),
        by="in the console",
    )
    return _back(sub["id"], "enabled")


async def disable_confirm(request: Request, s: sessions.Session) -> Response:
    sub = await subscriptions.get(deps(request), s.tenant, request.path_params["sub_id"])
    return confirm_page(
        s,
        title=f"Disable subscription {sub['id']}?",
        question=render(
            "<p>Nothing more is sent to <code>$url</code> until it is enabled again; its "
            "events wait, in order, and deliveries still waiting when their run's retention "
            "ends expire.</p>",
            url=sub["url"],
        ),
        action=f"{sub_path(sub['id'])}/disable",
        label=f"Disable {sub['id']}",
        cancel=sub_path(sub["id"]),
        name="confirm-disable",
    )


async def disable(request: Request, s: sessions.Session) -> Response:
    sub = await subscriptions.patch(
        deps(request),
        s.tenant,
        request.path_params["sub_id"],
        SubscriptionPatch(enabled=False),
        by="in the console",
    )
    return _back(sub["id"], "disabled")


async def rotate_confirm(request: Request, s: sessions.Session) -> Response:
    sub = await subscriptions.get(deps(request), s.tenant, request.path_params["sub_id"])
    grace = deps(request).settings.secret_grace
    return confirm_page(
        s,
        title=f"Rotate the signing secret of {sub['id']}?",
        question=render(
            "<p>A new secret signs every delivery from now on; the current one keeps signing "
            "beside it for $hours h, so the receiver has that long to switch. The new secret "
            "is shown once, on the next page.</p>",
            hours=f"{grace / 3600:g}",
        ),
        action=f"{sub_path(sub['id'])}/rotate-secret",
        label="Rotate secret",
        cancel=sub_path(sub["id"]),
        name="confirm-rotate",
    )


async def rotate(request: Request, s: sessions.Session) -> Response:
    """Rotate, keep the new secret for this session to read once, and redirect to the page that
    shows it: a refresh there shows the page again, it never rotates again."""
    rotated = await subscriptions.rotate_secret(
        deps(request), s.tenant, request.path_params["sub_id"]
    )
    token = await sessions.put_flash(session_store(request), s, rotated.secret)
    return RedirectResponse(f"{sub_path(rotated.id)}?done=rotated&secret={token}", 303)


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


async def recover_confirm(request: Request, s: sessions.Session) -> Response:
    d, sub_id = deps(request), request.path_params["sub_id"]
    h = await deliveries.health(d, s.tenant, sub_id)
    since = request.query_params.get("since", "")
    last = h.last or {}
    return confirm_page(
        s,
        title="The endpoint is still failing",
        question=render(
            "<p>Its deliveries have been failing since $since (last attempt: $code $error). "
            "Recovered now, the dead letters will most likely fail again and go through "
            "their whole retry schedule. Send a test first, or recover anyway.</p>",
            since=ts(h.since),
            code=last.get("status_code") or "",
            error=last.get("error") or "",
        ),
        action=f"{sub_path(sub_id)}/recover",
        label="Recover anyway",
        cancel=sub_path(sub_id),
        fields={"since": since, "confirmed": "yes"},
        name="confirm-recover",
    )


async def recover(request: Request, s: sessions.Session) -> Response:
    d, sub_id = deps(request), request.path_params["sub_id"]
    form = form_of(request)
    raw = form.get("since", "")
    since = parse_since(raw)
    if since is None:
        await subscriptions.get(d, s.tenant, sub_id)  # another tenant's id stays a 404
        raise Invalid("since", "since: give a date and time (UTC).")
    try:
        done = await deliveries.recover(
            d, s.tenant, sub_id, since, unless_failing=form.get("confirmed") != "yes"
        )
    except Conflict as exc:
        if exc.code != "endpoint_failing":
            raise
        return RedirectResponse(f"{sub_path(sub_id)}/recover?{urlencode({'since': raw})}", 303)
    return _back(sub_id, "recovered", done.recovered)
