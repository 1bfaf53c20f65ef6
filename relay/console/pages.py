"""The console's shared page furniture: the layout, forms with their CSRF token, the session
check every page goes through (`authed`), and how an operation's domain error (relay/ops/errors.py)
is shown as a page. Each resource's pages are in their own module (runs, subscriptions,
notices, login); routes.py wires them."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import redis.asyncio as aioredis
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from relay.console import session as sessions
from relay.console.html import Safe, badge, join, render, template, ts
from relay.ops.deliveries import Health
from relay.ops.deps import Deps
from relay.ops.errors import Conflict, NotFound, OpError, StoreFull

Handler = Callable[[Request, sessions.Session], Awaitable[Response]]

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; img-src 'self' data:; "
    "connect-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: Messages a POST's redirect names with `?done=`; `{n}` a count, `{id}` the object it was
#: about (only an id the console made: checked against ID below, else left out).
FLASH = {
    "enabled": "Subscription enabled; its queued deliveries resume.",
    "disabled": "Subscription disabled; its deliveries wait until it is enabled again.",
    "test": "A ping event was queued for this subscription.",
    "recovered": "{n} dead-lettered deliveries were queued again.",
    "redelivered": "The event was queued again for {n} subscription(s).",
    "erased": "Run {id} and everything about it were erased.",
    "created": "Subscription created.",
    "saved": "Subscription saved.",
    "deleted": "Subscription {id} was deleted, with the deliveries queued for it.",
    "rotated": "The signing secret was rotated.",
    "listed": "Watch {id} lists its agent's runs now.",
    "acknowledged": "Notices acknowledged; a later one shows as new.",
}
ID = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


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
    flash_bad: bool = False,
    status: int = 200,
    head: Safe = Safe(""),
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
                ("deliveries", "/console/deliveries", "Deliveries"),
                ("subs", "/console/subscriptions", "Subscriptions"),
                ("notices", "/console/notices", "Notices"),
                ("watches", "/console/watches", "Watches"),
                ("connections", "/console/connections", "Connections"),
                ("usage", "/console/usage", "Usage"),
            )
        )
        nav = render(
            '<header><span class="brand">run relay</span><nav aria-label="Console" '
            'style="display:flex;gap:20px">$links</nav>'
            '<form method="get" action="/console/search" role="search">'
            '<label for="nav-q" class="visually-hidden">Search by id, upstream id or domain'
            '</label><input id="nav-q" name="q" placeholder="run, event, sub id or domain">'
            '<button type="submit">Search</button></form><span class="right">'
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
    if flash and flash_bad:
        flash_html = render('<div class="flash bad" role="alert">$m</div>', m=flash)
    elif flash:
        flash_html = render('<div class="flash" role="status">$m</div>', m=flash)
    html = render(
        template("base.html"), title=title, nav=nav, flash=flash_html, body=body, head=head
    )
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
    aria: str = "",
) -> Safe:
    """A form with one button that POSTs `fields` (and the CSRF token) to `action`. `aria` is
    the button's accessible name when its label alone would not say what it acts on (one of
    many "Redeliver" buttons)."""
    hidden = join(
        render('<input type="hidden" name="$k" value="$v">', k=k, v=v)
        for k, v in (fields or {}).items()
    )
    return render(
        '<form method="post" action="$action">$csrf$hidden'
        '<button type="submit" class="$cls" data-action="$name"$aria>$label</button></form>',
        action=action,
        csrf=csrf_field(s),
        hidden=hidden,
        cls=cls,
        name=name or label.lower(),
        aria=render(' aria-label="$a"', a=aria) if aria else Safe(""),
        label=label,
    )


def link_button(href: str, label: str, *, cls: str = "", name: str = "", aria: str = "") -> Safe:
    """A link that looks like a button: an action's first step (its confirmation page)."""
    return render(
        '<a class="button $cls" href="$href" data-action="$name"$aria>$label</a>',
        href=href,
        cls=cls,
        name=name or label.lower(),
        aria=render(' aria-label="$a"', a=aria) if aria else Safe(""),
        label=label,
    )


def confirm_page(
    s: sessions.Session,
    *,
    title: str,
    question: Safe | str,
    action: str,
    label: str,
    cancel: str,
    fields: dict[str, str] | None = None,
    name: str = "",
    danger: bool = True,
) -> HTMLResponse:
    """The confirmation step of an action that cannot be undone: the question, the button that
    POSTs the action, and Cancel (back, nothing done). Reached by a GET, so a refresh or a
    crawler only shows it again."""
    body = render(
        '<div class="card" style="max-width:720px"><h1>$title</h1><div>$question</div>'
        '<div class="actions" style="margin-top:16px">$go'
        '<a href="$cancel" class="button" data-action="cancel">Cancel</a></div></div>',
        title=title,
        question=question,
        go=post_button(
            s, action, label, cls="danger" if danger else "primary", fields=fields, name=name
        ),
        cancel=cancel,
    )
    return page(title, body, s)


def pager(
    base: str,
    params: dict[str, str],
    *,
    what: str,
    first: int,
    shown: int,
    total: int,
    newer: dict[str, str] | None,
    older: dict[str, str] | None,
) -> Safe:
    """ "Runs 51-100 of 224" with links to the newest, newer and older pages (each keeping the
    filters in `params`)."""

    def href(extra: dict[str, str]) -> str:
        kept = {k: v for k, v in {**params, **extra}.items() if v}
        return base + ("?" + urlencode(kept) if kept else "")

    if shown:
        where = f"{what} {first}-{first + shown - 1} of {total}"
    else:
        where = f"No {what.lower()} on this page ({total} in all)"
    links = []
    if newer is not None:
        links.append(render('<a href="$h" rel="prev">← Newer</a>', h=href(newer)))
        links.append(render('<a href="$h">Newest</a>', h=href({})))
    if older is not None:
        links.append(render('<a href="$h" rel="next">Older →</a>', h=href(older)))
    return render(
        '<nav class="pager" aria-label="$what pages"><span class="count">$where</span>$links</nav>',
        what=what,
        where=where,
        links=join(links),
    )


def bad_filter(
    s: sessions.Session, title: str, message: str, back: str, back_label: str, active: str
) -> HTMLResponse:
    """A filter or cursor the console cannot use: said so, with the way back (400)."""
    body = render(
        '<h1>$title</h1><p><a href="$back" data-action="back">$label</a></p>',
        title=title,
        back=back,
        label=back_label,
    )
    return page(title, body, s, active=active, flash=message, flash_bad=True, status=400)


def not_found(s: sessions.Session | None, what: str) -> HTMLResponse:
    return page(
        "Not found",
        render("<h1>Not found</h1><p>There is no such $what in this tenant.</p>", what=what),
        s,
        status=404,
    )


def forbidden(s: sessions.Session | None, why: str) -> HTMLResponse:
    return page("Forbidden", render("<h1>Forbidden</h1><p>$why</p>", why=why), s, status=403)


def flash_of(request: Request) -> str:
    done = request.query_params.get("done", "")
    text = FLASH.get(done, "")
    n = request.query_params.get("n", "0")
    about = request.query_params.get("id", "")
    return text.format(
        n=int(n) if n.isdigit() and len(n) < 10 else 0,
        id=about if ID.match(about) else "(unnamed)",
    )


def session_store(request: Request) -> aioredis.Redis:
    """Where console sessions and login throttles live (relay/console/session.py); pages read
    and change the relay only through the operations (`deps`)."""
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
            return await _run_op(handler, request, s)
        if s is None:
            target = request.url.path
            if request.url.query:
                target += "?" + request.url.query
            return RedirectResponse("/console/login?" + urlencode({"next": target}), 303)
        return await _run_op(handler, request, s)

    return endpoint


async def _run_op(handler: Handler, request: Request, s: sessions.Session) -> Response:
    try:
        return await handler(request, s)
    except OpError as exc:
        return op_error_page(s, exc)


def form_of(request: Request) -> dict[str, str]:
    form: dict[str, str] = request.state.form
    return form


def safe_next(value: str | None) -> str:
    if value and value.startswith("/console/") and "//" not in value and "\\" not in value:
        return value
    return "/console/runs"


def deps(request: Request) -> Deps:
    """The operations' dependencies, from the app (the same ones the JSON API uses)."""
    return Deps.of_state(request.app.state)


def op_error_page(s: sessions.Session | None, exc: OpError) -> HTMLResponse:
    """A domain error as the console shows it: NotFound 404, Invalid 400, Conflict 409,
    StoreFull 503."""
    if isinstance(exc, NotFound):
        return not_found(s, exc.what)
    title, status = ("Conflict", 409) if isinstance(exc, Conflict) else ("Bad input", 400)
    if isinstance(exc, StoreFull):
        title, status = "Store full", 503
    body = render(
        '<h1>$t</h1><p><a href="/console/runs" data-action="back">Back to the runs</a></p>',
        t=title,
    )
    return page(title, body, s, flash=exc.message, flash_bad=True, status=status)


def attempts_table(
    attempts: list[dict[str, Any]], *, show_event: bool, show_sub: bool = False
) -> Safe:
    if not attempts:
        return Safe('<p class="muted">No attempts recorded.</p>')
    head = "<th>event</th><th>run</th>" if show_event else ""
    if show_sub:
        head += "<th>subscription</th>"
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
        if show_sub:
            event_cells = render(
                '$cells<td><a class="mono" href="/console/subscriptions/$s">$s</a></td>',
                cells=event_cells,
                s=a.get("subscription_id") or "",
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


def health_badge(h: Health) -> Safe:
    """healthy / failing since … / disabled, with the recent success rate beside it."""
    if h.state == "disabled":
        text = "disabled" + (f" since {ts(h.since)}" if h.since else "")
        tone = "bad"
    elif h.state == "failing":
        text, tone = f"failing since {ts(h.since)}", "bad"
    else:
        text, tone = "healthy", "ok"
    return render(
        '<span class="health" data-health="$state">$badge</span>',
        state=h.state,
        badge=badge(text, tone),
    )


def success_rate(h: Health) -> str:
    if h.success_rate is None:
        return f"no attempts in the last {h.window / 3600:g} h"
    return (
        f"{h.success_rate:.0%} of {h.attempts} attempt(s) succeeded in the last "
        f"{h.window / 3600:g} h"
    )
