"""Console pages and actions. Reads and changes go straight to the store (the same Redis
functions the JSON API uses); nothing here calls the API over HTTP. Every id is checked against
the session's tenant: another tenant's run, event or subscription is a 404, as in the API."""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

import redis.asyncio as aioredis
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from relay import keys, signing
from relay.api.runs import CURSOR_PATTERN
from relay.console import event_body
from relay.console import session as sessions
from relay.console.html import Safe, badge, esc, join, render, template, ts
from relay.secret_box import seal
from relay.store import lanes
from relay.store import subscriptions as subs_store
from relay.store.client import loads
from relay.store.runs import get_tenant_run, list_runs, public_run

CURSOR = re.compile(CURSOR_PATTERN)

Handler = Callable[[Request, sessions.Session], Awaitable[Response]]

PAGE_SIZE = 50
ATTEMPTS_SHOWN = 100
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
FLASH = {
    "enabled": "Subscription enabled; its queued deliveries resume.",
    "disabled": "Subscription disabled; its deliveries wait until it is enabled again.",
    "test": "A ping event was queued for this subscription.",
    "recovered": "{n} dead-lettered deliveries were queued again.",
    "redelivered": "The event was queued again for {n} subscription(s).",
}


# ------------------------------------------------------------------------------------ plumbing


def _headers() -> dict[str, str]:
    return {
        "content-security-policy": CSP,
        "x-frame-options": "DENY",
        "x-content-type-options": "nosniff",
        "referrer-policy": "same-origin",
        "cache-control": "no-store",
    }


def page(
    title: str,
    body: Safe,
    s: sessions.Session | None = None,
    *,
    active: str = "",
    flash: Safe | str = "",
    status: int = 200,
) -> HTMLResponse:
    nav = Safe("")
    if s is not None:
        links = join(
            render(
                '<a href="$href" class="$cls">$label</a>',
                href=href,
                label=label,
                cls="on" if key == active else "",
            )
            for key, href, label in (
                ("runs", "/console/runs", "Runs"),
                ("subs", "/console/subscriptions", "Subscriptions"),
                ("notices", "/console/notices", "Notices"),
            )
        )
        nav = render(
            '<header><span class="brand">run relay</span>$links<span class="right">'
            "<span>tenant <b>$tenant</b></span>"
            '<form method="post" action="/console/logout">$csrf'
            '<button type="submit">Log out</button></form></span></header>',
            links=links,
            tenant=s.tenant,
            csrf=csrf_field(s),
        )
    else:
        nav = Safe('<header><span class="brand">run relay</span></header>')
    flash_html = Safe("")
    if flash:
        flash_html = render('<div class="flash" role="status">$m</div>', m=flash)
    html = render(template("base.html"), title=title, nav=nav, flash=flash_html, body=body)
    return HTMLResponse(html, status_code=status, headers=_headers())


def csrf_field(s: sessions.Session) -> Safe:
    return render('<input type="hidden" name="csrf" value="$t">', t=s.csrf)


def post_button(
    s: sessions.Session,
    action: str,
    label: str,
    *,
    cls: str = "",
    fields: dict[str, str] | None = None,
    name: str = "",
) -> Safe:
    hidden = join(
        render('<input type="hidden" name="$k" value="$v">', k=k, v=v)
        for k, v in (fields or {}).items()
    )
    return render(
        '<form method="post" action="$action">$csrf$hidden'
        '<button type="submit" class="$cls" data-action="$name">$label</button></form>',
        action=action,
        csrf=csrf_field(s),
        hidden=hidden,
        cls=cls,
        name=name or label.lower(),
        label=label,
    )


def not_found(s: sessions.Session | None, what: str) -> HTMLResponse:
    return page(
        "Not found",
        render("<h1>Not found</h1><p>There is no such $what in this tenant.</p>", what=what),
        s,
        status=404,
    )


def forbidden(s: sessions.Session | None, why: str) -> HTMLResponse:
    return page("Forbidden", render("<h1>Forbidden</h1><p>$why</p>", why=why), s, status=403)


def _flash(request: Request) -> str:
    done = request.query_params.get("done", "")
    text = FLASH.get(done, "")
    n = request.query_params.get("n", "0")
    return text.format(n=int(n) if n.isdigit() else 0)


def _redis(request: Request) -> aioredis.Redis:
    r: aioredis.Redis = request.app.state.redis
    return r


def authed(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """GET: a session is required (else the login page). POST: a session, a same-origin request
    and the session's CSRF token are required (else 403)."""

    async def endpoint(request: Request) -> Response:
        s = await sessions.current(request)
        if request.method == "POST":
            if s is None:
                return forbidden(None, "Your console session has ended; log in again.")
            if not sessions.same_origin(request):
                return forbidden(s, "The request came from another site.")
            form = await sessions.read_form(request)
            if form is None or not sessions.same_token(s.csrf, form.get("csrf")):
                return forbidden(s, "The form's security token is missing or wrong; reload.")
            request.state.form = form
            return await handler(request, s)
        if s is None:
            target = request.url.path
            if request.url.query:
                target += "?" + request.url.query
            return RedirectResponse("/console/login?" + urlencode({"next": target}), 303)
        return await handler(request, s)

    return endpoint


def _form(request: Request) -> dict[str, str]:
    form: dict[str, str] = request.state.form
    return form


def _safe_next(value: str | None) -> str:
    if value and value.startswith("/console/") and "//" not in value and "\\" not in value:
        return value
    return "/console/runs"


# ------------------------------------------------------------------------------- login/logout


def _login_page(request: Request, error: str = "", status: int = 200) -> Response:
    token, fresh = sessions.login_token(request)
    body = render(
        '<div class="card" style="max-width:460px">'
        "<h1>Log in to the console</h1>"
        '<p class="muted">Use one of your tenant\'s relay API keys. It is checked once and not '
        "stored; you get a session for 8 hours.</p>"
        '<form method="post" action="/console/login">'
        '<input type="hidden" name="login_token" value="$token">'
        '<input type="hidden" name="next" value="$next">'
        '<label for="api_key">API key</label>'
        '<input id="api_key" name="api_key" type="password" autocomplete="current-password" '
        'required style="width:100%;margin:4px 0 12px">'
        '<button class="primary" type="submit">Log in</button></form></div>',
        token=token,
        next=_safe_next(request.query_params.get("next")),
    )
    response = page("Log in", body, flash=error, status=status)
    if fresh:
        sessions.set_login_cookie(request, response, token)
    return response


async def login_form(request: Request) -> Response:
    if await sessions.current(request) is not None:
        return RedirectResponse(_safe_next(request.query_params.get("next")), 303)
    return _login_page(request)


async def login(request: Request) -> Response:
    if not sessions.same_origin(request):
        return forbidden(None, "The request came from another site.")
    form = await sessions.read_form(request)
    expected = request.cookies.get(sessions.LOGIN_COOKIE)
    if form is None or not sessions.same_token(expected, form.get("login_token")):
        return forbidden(None, "The login form expired or came from elsewhere; reload it.")
    r = _redis(request)
    client = request.client.host if request.client else "unknown"
    if await sessions.login_blocked(r, client):
        return _login_page(request, "Too many failed attempts; wait a few minutes.", 429)
    tenant = request.app.state.keyring.tenant(form.get("api_key", "").strip())
    if tenant is None:
        await sessions.login_failed(r, client)
        return _login_page(request, "That API key is not valid.", 401)
    s = await sessions.create(r, tenant)
    response = RedirectResponse(_safe_next(form.get("next")), 303)
    sessions.set_session_cookie(request, response, s)
    return response


async def _logout(request: Request, s: sessions.Session) -> Response:
    await sessions.destroy(_redis(request), s)
    response = RedirectResponse("/console/login", 303)
    sessions.clear_session_cookie(response)
    return response


async def index(request: Request) -> Response:
    return RedirectResponse("/console/runs", 303)


# ----------------------------------------------------------------------------------- runs


async def _runs(request: Request, s: sessions.Session) -> Response:
    q = request.query_params
    provider = q.get("provider") or None
    status = q.get("status") or None
    cursor = q.get("cursor") or None
    if cursor is not None and not CURSOR.match(cursor):
        cursor = None  # the same strict, always-finite form the JSON API accepts
    runs, next_cursor = await list_runs(
        _redis(request), s.tenant, limit=PAGE_SIZE, cursor=cursor, provider=provider, status=status
    )
    rows = join(
        render(
            '<tr><td><a class="mono" href="/console/runs/$id">$id</a></td><td>$provider</td>'
            '<td>$state</td><td>$status</td><td class="mono">$upstream</td>'
            '<td class="num">$seq</td><td>$created</td><td>$updated</td></tr>',
            id=run["id"],
            provider=run.get("provider"),
            state=badge(run.get("state")),
            status=badge(run.get("status") or None),
            upstream=run.get("upstream_run_id") or "",
            seq=run.get("sequence") or "0",
            created=ts(run.get("created_at")),
            updated=ts(run.get("updated_at")),
        )
        for run in runs
    )
    if not runs:
        rows = Safe('<tr><td colspan="8" class="muted">No runs.</td></tr>')
    more = Safe("")
    if next_cursor:
        params = {"cursor": next_cursor, "provider": provider or "", "status": status or ""}
        more = render(
            '<p class="pager"><a href="/console/runs?$q">Older runs →</a></p>', q=urlencode(params)
        )
    body = render(
        "<h1>Runs</h1>"
        '<form method="get" action="/console/runs" class="actions card">'
        '<div><label for="provider">provider</label>'
        '<input id="provider" name="provider" value="$provider"></div>'
        '<div><label for="status">state or status</label>'
        '<input id="status" name="status" value="$status"></div>'
        '<button type="submit">Filter</button></form>'
        "<table><thead><tr><th>run</th><th>provider</th><th>state</th><th>vendor status</th>"
        "<th>upstream run</th><th>events</th><th>created</th><th>updated</th></tr></thead>"
        "<tbody>$rows</tbody></table>$more",
        provider=provider or "",
        status=status or "",
        rows=rows,
        more=more,
    )
    return page("Runs", body, s, active="runs", flash=_flash(request))


async def _event_rows(r: aioredis.Redis, run_id: str) -> list[dict[str, Any]]:
    ids = await r.lrange(keys.run_events(run_id), 0, -1)
    if not ids:
        return []
    pipe = r.pipeline(transaction=False)
    for evt in ids:
        pipe.hmget(
            keys.event(evt), ["id", "type", "sequence", "status", "created_at", "subs", "body"]
        )
    rows = await pipe.execute()
    out: list[dict[str, Any]] = []
    pipe = r.pipeline(transaction=False)
    for row in rows:
        if not row[0]:
            continue
        subs = [x for x in (row[5] or "").split(",") if x]
        out.append(
            {
                "id": row[0],
                "type": row[1],
                "sequence": row[2],
                "status": row[3],
                "created_at": row[4],
                "subs": subs,
                "body": row[6] or "",
            }
        )
        for sub in subs:
            pipe.hgetall(keys.delivery(row[0], sub))
    states = await pipe.execute() if any(e["subs"] for e in out) else []
    it = iter(states)
    for e in out:
        e["deliveries"] = {sub: next(it) for sub in e["subs"]}
    return out


async def _attempt_log(r: aioredis.Redis, sub_id: str, limit: int) -> list[dict[str, Any]]:
    rows = await r.lrange(keys.sub_attempts(sub_id), 0, limit - 1)
    return [loads(row) for row in rows]


def _attempts_table(attempts: list[dict[str, Any]], *, show_event: bool) -> Safe:
    if not attempts:
        return Safe('<p class="muted">No attempts recorded.</p>')
    head = "<th>event</th><th>run</th>" if show_event else ""
    rows = []
    for a in attempts:
        excerpt = a.get("response_excerpt") or ""
        excerpt_html = (
            render(
                "<details><summary>$short</summary><pre>$full</pre></details>",
                short=excerpt[:60],
                full=excerpt,
            )
            if len(excerpt) > 60
            else render("<code>$e</code>", e=excerpt)
        )
        event_cells = Safe("")
        if show_event:
            run_id = a.get("run_id") or ""
            run_link = (
                render('<a class="mono" href="/console/runs/$r">$r</a>', r=run_id)
                if run_id and run_id != "ping"
                else render('<span class="muted">$r</span>', r=run_id or "-")
            )
            event_cells = render(
                '<td class="mono">$e</td><td>$run</td>', e=a.get("event_id") or "", run=run_link
            )
        code = a.get("status_code")
        rows.append(
            render(
                '<tr class="attempt" data-outcome="$outcome" data-run="$run_id"><td>$at</td>'
                "$event_cells"
                '<td class="num">$n</td><td>$badge</td><td class="num">$code</td>'
                '<td class="num">$latency</td><td>$error</td><td>$excerpt</td></tr>',
                outcome=a.get("outcome") or "",
                run_id=a.get("run_id") or "",
                at=ts(a.get("at")),
                event_cells=event_cells,
                n=a.get("attempt") or "",
                badge=badge(a.get("outcome")),
                code="" if code is None else code,
                latency=f"{float(a.get('latency_ms') or 0):.0f} ms",
                error=a.get("error") or "",
                excerpt=excerpt_html,
            )
        )
    return render(
        "<table><thead><tr><th>time</th>$head<th>#</th><th>outcome</th><th>status</th>"
        "<th>latency</th><th>error</th><th>response excerpt</th></tr></thead>"
        "<tbody>$rows</tbody></table>",
        head=Safe(head),
        rows=join(rows),
    )


async def _run(request: Request, s: sessions.Session) -> Response:
    r = _redis(request)
    run = await get_tenant_run(r, s.tenant, request.path_params["run_id"])
    if run is None:
        return not_found(s, "run")
    pub = public_run(run)
    evts = await _event_rows(r, run["id"])
    sub_ids = sorted({sub for e in evts for sub in e["subs"]})
    subs: dict[str, dict[str, str]] = {}
    by_pair: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for sub_id in sub_ids:
        sub = await subs_store.get_tenant_sub(r, s.tenant, sub_id)
        if sub is None:
            continue
        subs[sub_id] = sub
        for a in await _attempt_log(r, sub_id, request.app.state.settings.attempt_retention):
            if a.get("run_id") == run["id"]:
                by_pair[(a.get("event_id") or "", sub_id)].append(a)

    blocks = []
    for e in evts:
        deliveries = []
        for sub_id in e["subs"]:
            state = e["deliveries"].get(sub_id) or {}
            sub = subs.get(sub_id)
            if sub is None:
                label = render('<span class="muted mono">$id (removed)</span>', id=sub_id)
            elif sub.get("kind") == subs_store.CALLBACK:
                label = render(
                    '<a class="mono" href="/console/subscriptions/$id">callback</a> '
                    '<span class="muted">$url</span>',
                    id=sub_id,
                    url=sub.get("url"),
                )
            else:
                label = render(
                    '<a class="mono" href="/console/subscriptions/$id">$id</a> '
                    '<span class="muted">$desc</span>',
                    id=sub_id,
                    desc=sub.get("description") or sub.get("url"),
                )
            deliveries.append(
                render(
                    '<div class="delivery" data-subscription="$id" data-state="$state">'
                    "<h3>$label · $badge · $attempts attempt(s)$next</h3>$table</div>",
                    id=sub_id,
                    state=state.get("state") or "",
                    label=label,
                    badge=badge(state.get("state")),
                    attempts=state.get("attempts") or "0",
                    next=render(" · next try $t", t=ts(state["next_at"]))
                    if state.get("next_at")
                    else "",
                    table=_attempts_table(by_pair.get((e["id"], sub_id), []), show_event=False),
                )
            )
        if not deliveries:
            deliveries.append(Safe('<p class="muted">No subscription matched this event.</p>'))
        redeliver = (
            post_button(
                s,
                f"/console/events/{quote(e['id'])}/redeliver",
                "Redeliver",
                name="redeliver",
            )
            if e["subs"]
            else Safe("")
        )
        blocks.append(
            render(
                '<section class="event" id="$id"><div class="actions"><h2 style="margin:0">'
                "#$seq $type $status</h2>$redeliver</div>"
                '<p class="muted">event <code>$id</code> recorded $at</p>$body'
                "$deliveries</section>",
                id=e["id"],
                seq=e["sequence"],
                type=e["type"],
                status=badge(e["status"]),
                redeliver=redeliver,
                at=ts(e["created_at"]),
                body=event_body.block(e["body"]),
                deliveries=join(deliveries),
            )
        )
    error = pub.get("error")
    body = render(
        '<h1>Run <span class="mono">$id</span></h1><div class="card"><dl class="kv">'
        "<dt>provider</dt><dd>$provider</dd><dt>state</dt><dd>$state</dd>"
        '<dt>vendor status</dt><dd>$status</dd><dt>upstream run</dt><dd class="mono">$up</dd>'
        "<dt>agent</dt><dd>$agent</dd><dt>polls</dt><dd>$polls</dd>"
        "<dt>created</dt><dd>$created</dd><dt>updated</dt><dd>$updated</dd>"
        "<dt>metadata</dt><dd><code>$meta</code></dd><dt>callback</dt><dd>$cb</dd>"
        "<dt>error</dt><dd>$error</dd></dl></div>"
        "<h2>Status history and deliveries</h2>$blocks",
        id=pub["id"],
        provider=pub["provider"],
        state=badge(pub["state"]),
        status=badge(pub["status"]),
        up=pub["upstream_run_id"] or "",
        agent=pub["agent_id"] or "",
        polls=pub["polls"],
        created=ts(pub["created_at"]),
        updated=ts(pub["updated_at"]),
        meta=run.get("metadata") or "{}",
        cb=pub["callback_url"] or "",
        error=f"{error.get('error')}: {error.get('message')}" if isinstance(error, dict) else "",
        blocks=join(blocks) if blocks else Safe('<p class="muted">No events yet.</p>'),
    )
    return page(f"Run {run['id']}", body, s, active="runs", flash=_flash(request))


async def _redeliver(request: Request, s: sessions.Session) -> Response:
    r = _redis(request)
    event = await r.hgetall(keys.event(request.path_params["event_id"]))
    if not event:
        return not_found(s, "event")
    run_id = event.get("run_id") or "ping"
    owner = event.get("tenant")
    if run_id != "ping":
        run = await get_tenant_run(r, s.tenant, run_id)
        owner = run["tenant"] if run else None
    if owner != s.tenant:
        return not_found(s, "event")
    targets = [x for x in (event.get("subs") or "").split(",") if x]
    wanted = _form(request).get("subscription_id")
    if wanted:
        targets = [x for x in targets if x == wanted]
    now = time.time()
    queued = 0
    for sub_id in targets:
        if await subs_store.get_tenant_sub(r, s.tenant, sub_id) is None:
            continue
        await lanes.enqueue(r, sub_id, run_id, event["id"], now)
        queued += 1
    back = (
        f"/console/runs/{quote(run_id)}"
        if run_id != "ping"
        else f"/console/subscriptions/{quote(targets[0])}"
        if targets
        else "/console/runs"
    )
    return RedirectResponse(f"{back}?done=redelivered&n={queued}", 303)


# -------------------------------------------------------------------------- subscriptions


async def _subs(request: Request, s: sessions.Session) -> Response:
    r = _redis(request)
    subs = await subs_store.tenant_subs(r, s.tenant)
    dead: list[int] = []
    if subs:
        pipe = r.pipeline(transaction=False)
        for sub in subs:
            pipe.zcard(keys.sub_dead(sub["id"]))
        dead = [int(n) for n in await pipe.execute()]
    rows = join(
        render(
            '<tr><td><a class="mono" href="/console/subscriptions/$id">$id</a></td>'
            '<td>$desc</td><td class="mono">$url</td><td>$state</td><td>$failing</td>'
            '<td class="num">$dead</td><td>$created</td></tr>',
            id=sub["id"],
            desc=sub.get("description") or "",
            url=sub.get("url"),
            state=badge("enabled" if sub.get("enabled") == "1" else "disabled"),
            failing=ts(sub.get("failing_since")),
            dead=n,
            created=ts(sub.get("created_at")),
        )
        for sub, n in zip(subs, dead or [0] * len(subs), strict=True)
    )
    if not subs:
        rows = Safe('<tr><td colspan="7" class="muted">No subscriptions.</td></tr>')
    body = render(
        "<h1>Subscriptions</h1><table><thead><tr><th>subscription</th><th>description</th>"
        "<th>url</th><th>state</th><th>failing since</th><th>dead letters</th><th>created</th>"
        "</tr></thead><tbody>$rows</tbody></table>",
        rows=rows,
    )
    return page("Subscriptions", body, s, active="subs", flash=_flash(request))


async def _own_sub(request: Request, s: sessions.Session) -> dict[str, str] | None:
    return await subs_store.get_tenant_sub(_redis(request), s.tenant, request.path_params["sub_id"])


def _since_default(now: float) -> str:
    return datetime.fromtimestamp(now - 86400, UTC).strftime("%Y-%m-%dT%H:%M")


async def _sub(request: Request, s: sessions.Session, secret: str | None = None) -> Response:
    r = _redis(request)
    sub = await _own_sub(request, s)
    if sub is None:
        return not_found(s, "subscription")
    pub = subs_store.public_sub(sub)
    callback = pub["kind"] == subs_store.CALLBACK
    event_filter = request.query_params.get("event_id") or ""
    attempts = await _attempt_log(
        r,
        sub["id"],
        request.app.state.settings.attempt_retention if event_filter else ATTEMPTS_SHOWN,
    )
    if event_filter:
        attempts = [a for a in attempts if a.get("event_id") == event_filter]
    dead = await r.zrevrange(keys.sub_dead(sub["id"]), 0, 99, withscores=True)
    dead_rows = join(
        render(
            '<tr class="dead"><td class="mono">$event</td><td>$run</td><td>$at</td><td>$btn</td>'
            "</tr>",
            event=member.partition("|")[0],
            run=render('<a class="mono" href="/console/runs/$r">$r</a>', r=member.partition("|")[2])
            if member.partition("|")[2] != "ping"
            else "ping",
            at=ts(score),
            btn=post_button(
                s,
                f"/console/events/{quote(member.partition('|')[0])}/redeliver",
                "Redeliver",
                fields={"subscription_id": sub["id"]},
                name="redeliver-one",
            ),
        )
        for member, score in dead
    )
    enabled = pub["enabled"]
    toggle = (
        post_button(
            s, f"/console/subscriptions/{quote(sub['id'])}/disable", "Disable", cls="danger"
        )
        if enabled
        else post_button(
            s, f"/console/subscriptions/{quote(sub['id'])}/enable", "Enable", cls="primary"
        )
    )
    extra = Safe("")
    if not callback:
        extra = join(
            [
                post_button(
                    s,
                    f"/console/subscriptions/{quote(sub['id'])}/rotate-secret",
                    "Rotate secret",
                    name="rotate",
                ),
                post_button(
                    s, f"/console/subscriptions/{quote(sub['id'])}/test", "Send test", name="test"
                )
                if enabled
                else Safe(""),
            ]
        )
    recover = render(
        '<form method="post" action="/console/subscriptions/$id/recover">$csrf'
        '<div><label for="since">dead-lettered since (UTC)</label>'
        '<input id="since" name="since" type="datetime-local" step="1" value="$since"></div>'
        '<button type="submit" class="primary" data-action="recover">Recover failed</button>'
        "</form>",
        id=quote(sub["id"]),
        csrf=csrf_field(s),
        since=_since_default(time.time()),
    )
    secret_html = Safe("")
    if secret is not None:
        secret_html = render(
            '<div class="card"><h2 style="margin-top:0">New signing secret</h2>'
            "<p>Shown once: store it now. The previous secret keeps signing beside it until "
            '$until.</p><p class="secret mono" id="new-secret">$secret</p></div>',
            secret=secret,
            until=ts(time.time() + request.app.state.settings.secret_grace),
        )
    flt = pub["filter"] or {}
    body = render(
        '<h1>Subscription <span class="mono">$id</span></h1>$secret_html'
        '<div class="card"><dl class="kv">'
        '<dt>description</dt><dd>$desc</dd><dt>url</dt><dd class="mono">$url</dd>'
        "<dt>state</dt><dd>$state $reason</dd><dt>failing since</dt><dd>$failing</dd>"
        "<dt>filter</dt><dd>providers: $providers · statuses: $statuses · types: $types</dd>"
        "<dt>kind</dt><dd>$kind</dd><dt>created</dt><dd>$created</dd></dl></div>"
        '<div class="card actions">$toggle$extra$recover</div>'
        "<h2>Dead letters</h2>$dead"
        "<h2>Attempt log$filtered</h2>$attempts",
        id=pub["id"],
        secret_html=secret_html,
        desc=pub["description"],
        url=pub["url"],
        state=badge("enabled" if enabled else "disabled"),
        reason=pub["disabled_reason"] or "",
        failing=ts(pub["failing_since"]) or "-",
        providers=", ".join(flt.get("providers") or []) or "any",
        statuses=", ".join(flt.get("statuses") or []) or "any",
        types=", ".join(flt.get("event_types") or []) or "any",
        kind=pub["kind"] + (f" of run {pub['run_id']}" if pub["run_id"] else ""),
        created=ts(pub["created_at"]),
        toggle=toggle,
        extra=extra,
        recover=recover,
        dead=render(
            "<table><thead><tr><th>event</th><th>run</th><th>dead-lettered</th><th></th></tr>"
            "</thead><tbody>$rows</tbody></table>",
            rows=dead_rows,
        )
        if dead
        else Safe('<p class="muted">None.</p>'),
        filtered=render(" for event $e", e=event_filter) if event_filter else "",
        attempts=_attempts_table(attempts, show_event=True),
    )
    response = page(f"Subscription {sub['id']}", body, s, active="subs", flash=_flash(request))
    return response


async def _sub_page(request: Request, s: sessions.Session) -> Response:
    return await _sub(request, s)


def _back(sub_id: str, done: str, n: int | None = None) -> RedirectResponse:
    suffix = f"&n={n}" if n is not None else ""
    return RedirectResponse(f"/console/subscriptions/{quote(sub_id)}?done={done}{suffix}", 303)


async def _set_enabled(request: Request, s: sessions.Session, on: bool) -> Response:
    r = _redis(request)
    sub = await _own_sub(request, s)
    if sub is None:
        return not_found(s, "subscription")
    now = time.time()
    fields = {"updated_at": repr(now), "enabled": "1" if on else "0"}
    if on:
        fields.update(disabled_reason="", disabled_at="", failing_since="")
    else:
        fields.update(disabled_reason="disabled in the console", disabled_at=repr(now))
    await r.hset(keys.subscription(sub["id"]), mapping=fields)
    if on and sub.get("enabled") != "1":
        await subs_store.resume_lanes(r, sub["id"], now)
    return _back(sub["id"], "enabled" if on else "disabled")


async def _enable(request: Request, s: sessions.Session) -> Response:
    return await _set_enabled(request, s, True)


async def _disable(request: Request, s: sessions.Session) -> Response:
    return await _set_enabled(request, s, False)


async def _rotate(request: Request, s: sessions.Session) -> Response:
    sub = await _own_sub(request, s)
    if sub is None or sub.get("kind") == subs_store.CALLBACK:
        return not_found(s, "subscription")
    settings = request.app.state.settings
    secret = signing.new_secret()
    now = time.time()
    sealed = seal(secret, settings.relay_encryption_key)
    secrets_ = subs_store.rotated_secrets(sub, sealed, now, settings.secret_grace)
    await _redis(request).hset(
        keys.subscription(sub["id"]), mapping={"secrets": secrets_, "updated_at": repr(now)}
    )
    return await _sub(request, s, secret=secret)


async def _test(request: Request, s: sessions.Session) -> Response:
    r = _redis(request)
    sub = await _own_sub(request, s)
    if sub is None or sub.get("kind") == subs_store.CALLBACK:
        return not_found(s, "subscription")
    if sub.get("enabled") != "1":
        return _back(sub["id"], "disabled")
    now = time.time()
    await lanes.send_ping(r, sub, now)
    return _back(sub["id"], "test")


def _parse_since(raw: str) -> float | None:
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


async def _recover(request: Request, s: sessions.Session) -> Response:
    r = _redis(request)
    sub = await _own_sub(request, s)
    if sub is None:
        return not_found(s, "subscription")
    since = _parse_since(_form(request).get("since", ""))
    if since is None:
        return page(
            "Bad input",
            Safe("<h1>Bad input</h1><p>since: give a date and time (UTC).</p>"),
            s,
            status=400,
        )
    dead = await r.zrangebyscore(keys.sub_dead(sub["id"]), max(since, 0.0), "+inf")
    now = time.time()
    for item in dead:
        event_id, _, run_id = item.partition("|")
        await lanes.enqueue(r, sub["id"], run_id, event_id, now)
        await r.zrem(keys.sub_dead(sub["id"]), item)
    return _back(sub["id"], "recovered", len(dead))


# -------------------------------------------------------------------------------- notices


async def _notices(request: Request, s: sessions.Session) -> Response:
    rows_raw = await _redis(request).lrange(keys.tenant_notices(s.tenant), 0, 199)
    notices = [loads(x) for x in rows_raw]
    rows = join(
        render(
            '<tr><td>$at</td><td>$type</td><td><a class="mono" '
            'href="/console/subscriptions/$sub">$sub</a></td><td>$reason</td></tr>',
            at=ts(n.get("at")),
            type=n.get("type") or "",
            sub=n.get("subscription_id") or "",
            reason=n.get("reason") or "",
        )
        for n in notices
    )
    if not notices:
        rows = Safe('<tr><td colspan="4" class="muted">No notices.</td></tr>')
    body = render(
        '<h1>Notices</h1><p class="muted">Subscriptions the relay disabled, newest first.</p>'
        "<table><thead><tr><th>time</th><th>type</th><th>subscription</th><th>reason</th></tr>"
        "</thead><tbody>$rows</tbody></table>",
        rows=rows,
    )
    return page("Notices", body, s, active="notices")


async def not_found_page(request: Request) -> Response:
    return not_found(await sessions.current(request), "page")


def routes() -> list[Route]:
    return [
        Route("/console", index, methods=["GET"]),
        Route("/console/", index, methods=["GET"]),
        Route("/console/login", login_form, methods=["GET"]),
        Route("/console/login", login, methods=["POST"]),
        Route("/console/logout", authed(_logout), methods=["POST"]),
        Route("/console/runs", authed(_runs), methods=["GET"]),
        Route("/console/runs/{run_id}", authed(_run), methods=["GET"]),
        Route("/console/events/{event_id}/redeliver", authed(_redeliver), methods=["POST"]),
        Route("/console/subscriptions", authed(_subs), methods=["GET"]),
        Route("/console/subscriptions/{sub_id}", authed(_sub_page), methods=["GET"]),
        Route("/console/subscriptions/{sub_id}/enable", authed(_enable), methods=["POST"]),
        Route("/console/subscriptions/{sub_id}/disable", authed(_disable), methods=["POST"]),
        Route("/console/subscriptions/{sub_id}/rotate-secret", authed(_rotate), methods=["POST"]),
        Route("/console/subscriptions/{sub_id}/test", authed(_test), methods=["POST"]),
        Route("/console/subscriptions/{sub_id}/recover", authed(_recover), methods=["POST"]),
        Route("/console/notices", authed(_notices), methods=["GET"]),
        Route("/console/{rest:path}", not_found_page, methods=["GET"]),
    ]


__all__ = ["esc", "routes"]
