"""Console pages of the tenant's own set-up: its watches (with refresh), its vendor connections
(provider and `key_hint` only: the key itself is write-only) and its usage. Each reads one
operation of relay/ops (watches, connections, usage), as the JSON API's `/v1/watches`,
`/v1/connections` and `/v1/usage` do.

API keys are not here: they are the operator's (`/v1/admin/api-keys`, `relay keys`, behind
RELAY_ADMIN_KEY), and a console session is always one tenant's, opened with one of its keys, so
there is no admin session to show them to. The usage page says so."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from relay.console import session as sessions
from relay.console.html import Safe, badge, join, render, ts
from relay.console.pages import deps, flash_of, page, post_button
from relay.ops import connections, usage, watches
from relay.store.client import dumps


def _table(head: str, rows: list[Safe], empty: str, cols: int) -> Safe:
    body = (
        join(rows)
        if rows
        else render('<tr><td colspan="$n" class="muted">$e</td></tr>', n=cols, e=empty)
    )
    return render(
        "<table><thead><tr>$head</tr></thead><tbody>$body</tbody></table>",
        head=Safe(head),
        body=body,
    )


async def watches_page(request: Request, s: sessions.Session) -> Response:
    found = await watches.list_all(deps(request), s.tenant)
    rows = []
    for w in found:
        state = badge("set aside", "bad") if w["set_aside"] else badge("watching", "info")
        error = w["job_error"] or w["last_error"]
        rows.append(
            render(
                '<tr class="watch" id="$id"><td class="mono">$id</td><td>$provider</td>'
                '<td class="mono">$agent</td><td>$state</td><td>$listed</td><td>$error</td>'
                "<td>$metadata</td><td>$created</td><td>$refresh</td></tr>",
                id=w["id"],
                provider=w["provider"],
                agent=w["agent_id"],
                state=state,
                listed=ts(w["last_listed_at"]) or "not yet",
                error=render("<code>$e</code>", e=error if isinstance(error, str) else dumps(error))
                if error
                else "",
                metadata=render("<code>$m</code>", m=dumps(w["metadata"])) if w["metadata"] else "",
                created=ts(w["created_at"]),
                refresh=post_button(
                    s,
                    f"/console/watches/{quote(w['id'])}/refresh",
                    "List now",
                    cls="small",
                    name="refresh-watch",
                    aria=f"List the runs of agent {w['agent_id']} now ({w['id']})",
                ),
            )
        )
    body = render(
        '<h1>Watches</h1><p class="muted">Agents whose runs are tracked by themselves from when '
        "the watch was made (POST /v1/watches). A watch whose listing kept failing is set aside "
        "until it is listed again.</p>$table",
        table=_table(
            "<th>watch</th><th>provider</th><th>agent</th><th>state</th><th>last listed</th>"
            "<th>error</th><th>metadata</th><th>created</th><th>action</th>",
            rows,
            "No watches. Make one with POST /v1/watches.",
            9,
        ),
    )
    return page("Watches", body, s, active="watches", flash=flash_of(request))


async def refresh_watch(request: Request, s: sessions.Session) -> Response:
    """List the agent's runs now (relay/ops/watches.py `refresh`); a set-aside watch comes back."""
    watch_id = request.path_params["watch_id"]
    await watches.refresh(deps(request), s.tenant, watch_id)
    return RedirectResponse(f"/console/watches?done=listed&id={quote(watch_id)}", 303)


async def connections_page(request: Request, s: sessions.Session) -> Response:
    d = deps(request)
    found = {c["provider"]: c for c in await connections.list_all(d, s.tenant)}
    shared = d.settings.shared_connections
    rows = []
    for provider in d.providers:
        c = found.get(provider)
        if c is None:
            state = badge("operator's key", "muted") if shared else badge("no connection", "bad")
            rows.append(
                render(
                    '<tr class="connection" data-provider="$p"><td>$p</td><td>$state</td>'
                    '<td colspan="3" class="muted">$why</td></tr>',
                    p=provider,
                    state=state,
                    why="runs use the operator's shared key"
                    if shared
                    else f"runs cannot start or be tracked: PUT /v1/connections/{provider}",
                )
            )
            continue
        rows.append(
            render(
                '<tr class="connection" data-provider="$p"><td>$p</td><td>$state</td>'
                '<td class="mono">$hint</td><td>$created</td><td>$updated</td></tr>',
                p=provider,
                state=badge("own key", "ok"),
                hint=c["key_hint"] or "(a short key: no hint)",
                created=ts(c["created_at"]),
                updated=ts(c["updated_at"]),
            )
        )
    body = render(
        '<h1>Connections</h1><p class="muted">Your own vendor keys, one per provider, used by '
        "every start, poll and watch of your runs. A key is write-only: only its last four "
        "characters are shown. Set or replace one with PUT /v1/connections/{provider}.</p>$table",
        table=_table(
            "<th>provider</th><th>connection</th><th>key hint</th><th>set</th><th>replaced</th>",
            rows,
            "No providers.",
            5,
        ),
    )
    return page("Connections", body, s, active="connections")


async def usage_page(request: Request, s: sessions.Session) -> Response:
    found = await usage.read(deps(request), s.tenant, None)
    names = list(found["totals"])
    head = "<th>day</th>" + "".join(f"<th>{n.replace('_', ' ')}</th>" for n in names)
    rows = [
        render(
            '<tr class="usage-day"><td>$day</td>$cells</tr>',
            day=d["day"],
            cells=join(render('<td class="num">$v</td>', v=d[n]) for n in names),
        )
        for d in reversed(found["days"])
    ]
    totals = join(
        render("<dt>$k</dt><dd>$v</dd>", k=n.replace("_", " "), v=found["totals"][n]) for n in names
    )
    body = render(
        '<h1>Usage</h1><p class="muted">Counted per UTC day since $since (GET /v1/usage).</p>'
        '<div class="card"><dl class="kv" id="usage-totals">$totals</dl></div>$table'
        '<h2>API keys</h2><p class="muted" data-note="api-keys">API keys are the operator\'s to '
        "make and revoke (<code>relay keys</code>, or /v1/admin/api-keys with RELAY_ADMIN_KEY). "
        "A console session is always one tenant's, opened with one of its keys, never the "
        "operator's, so keys are not listed here.</p>",
        since=found["since"],
        totals=totals,
        table=_table(head, rows, "Nothing counted in this period.", len(names) + 1),
    )
    return page("Usage", body, s, active="usage")
