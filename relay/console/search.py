"""Console search (relay/ops/search.py) and the deliveries log across subscriptions
(relay/ops/deliveries.py `delivery_log`)."""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from relay.console import live
from relay.console import session as sessions
from relay.console.html import Safe, join, render
from relay.console.pages import attempts_table, bad_filter, deps, page, pager
from relay.console.subscriptions import parse_since
from relay.ops import deliveries
from relay.ops import search as searching
from relay.ops.errors import Invalid
from relay.ops.paging import offset_of

PAGE_SIZE = 50


def _href(hit: searching.Hit) -> str:
    if hit.kind == "subscription":
        return f"/console/subscriptions/{quote(hit.id)}"
    if hit.kind == "event" and hit.run_id:
        return f"/console/runs/{quote(hit.run_id)}#{quote(hit.id)}"
    if hit.kind == "event":
        return f"/console/deliveries?q={quote(hit.id)}"
    return f"/console/runs/{quote(hit.id)}"


async def search_page(request: Request, s: sessions.Session) -> Response:
    q = request.query_params.get("q")
    try:
        found = await searching.search(deps(request), s.tenant, q)
    except Invalid as exc:
        return bad_filter(s, "Search", exc.message, "/console/runs", "Back to the runs", "")
    if len(found.hits) == 1 and not found.window:
        return RedirectResponse(_href(found.hits[0]), 303)
    rows = join(
        render(
            '<tr class="hit"><td>$kind</td><td><a class="mono" href="$href">$id</a></td>'
            "<td>$summary</td></tr>",
            kind=h.kind,
            href=_href(h),
            id=h.id,
            summary=h.summary,
        )
        for h in found.hits
    )
    scope = (
        render(
            '<p class="muted">Not an id the relay knows, so it was looked for as a domain among '
            "your newest $n runs (older runs are not searched; find them by id).</p>",
            n=found.window,
        )
        if found.window
        else Safe("")
    )
    result = (
        render(
            "<table><thead><tr><th>kind</th><th>id</th><th>summary</th></tr></thead>"
            "<tbody>$rows</tbody></table>",
            rows=rows,
        )
        if found.hits
        else render('<p role="status">Nothing found for <b>$q</b>.</p>', q=found.query)
        if found.query
        else Safe("")
    )
    body = render(
        '<h1>Search</h1><form method="get" action="/console/search" class="actions card">'
        '<div><label for="q">run, event or subscription id, upstream run id '
        "(<code>agent/run</code> for Autoposting) or domain</label>"
        '<input id="q" name="q" value="$q" style="width:32em"></div>'
        '<button type="submit">Search</button></form>$scope$result',
        q=found.query,
        scope=scope,
        result=result,
    )
    return page("Search", body, s)


async def deliveries_page(request: Request, s: sessions.Session) -> Response:
    q = request.query_params
    sub_id = q.get("subscription") or None
    outcome = q.get("outcome") or None
    since_raw = q.get("since") or ""
    try:
        offset = offset_of(q.get("cursor"))
        since = parse_since(since_raw)
        if since is None:
            raise Invalid("since", "since: give a date and time (UTC)")
        log = await deliveries.delivery_log(
            deps(request),
            s.tenant,
            sub_id=sub_id,
            outcome=outcome,
            since=since or None,
            offset=offset,
            limit=PAGE_SIZE,
        )
    except Invalid as exc:
        return bad_filter(
            s, "Deliveries", exc.message, "/console/deliveries", "Show every delivery", "deliveries"
        )
    params = {"subscription": sub_id or "", "outcome": outcome or "", "since": since_raw}
    found = log.page
    nav = pager(
        "/console/deliveries",
        params,
        what="Attempts",
        first=found.offset + 1,
        shown=len(found.data),
        total=found.total,
        newer={"cursor": found.prev_cursor} if found.prev_cursor is not None else None,
        older={"cursor": found.next_cursor} if found.next_cursor else None,
    )
    sub_options = join(
        render(
            '<option value="$id"$sel>$id $desc</option>',
            id=sub["id"],
            desc=sub["description"],
            sel=Safe(" selected") if sub["id"] == sub_id else Safe(""),
        )
        for sub in log.subscriptions
    )
    outcome_options = join(
        render(
            '<option value="$o"$sel>$o</option>',
            o=o,
            sel=Safe(" selected") if o == outcome else Safe(""),
        )
        for o in deliveries.OUTCOMES
    )
    scope = (
        f"The whole attempt log of {sub_id} (its newest {log.window} attempts)."
        if sub_id
        else f"The newest {log.window} attempts of each subscription, merged."
    )
    body = render(
        "<h1>Deliveries</h1>$live"
        '<form method="get" action="/console/deliveries" class="actions card">'
        '<div><label for="subscription">subscription</label><select id="subscription" '
        'name="subscription"><option value="">every subscription</option>$subs</select></div>'
        '<div><label for="outcome">outcome</label><select id="outcome" name="outcome">'
        '<option value="">any</option>$outcomes</select></div>'
        '<div><label for="since">since (UTC)</label><input id="since" name="since" '
        'type="datetime-local" step="1" value="$since"></div>'
        '<button type="submit">Filter</button><a href="/console/deliveries">Clear filters</a>'
        '</form><p class="muted">$scope</p>$nav$table$nav',
        subs=sub_options,
        outcomes=outcome_options,
        since=since_raw,
        scope=scope,
        nav=nav,
        table=attempts_table(found.data, show_event=True, show_sub=True),
        live=live.toggle(request),
    )
    return page("Deliveries", body, s, active="deliveries", head=live.head(request))
