"""Console pages of runs: the list, one run with every event and each subscriber's attempts,
and redeliver. Data comes from relay/ops (runs, deliveries), as the JSON API's does."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from relay.console import event_body
from relay.console import session as sessions
from relay.console.html import Safe, badge, join, render, ts
from relay.console.pages import attempts_table, deps, flash_of, form_of, page, post_button
from relay.ops import deliveries, runs
from relay.ops.subscriptions import CALLBACK
from relay.store.client import dumps

PAGE_SIZE = 50


async def runs_page(request: Request, s: sessions.Session) -> Response:
    q = request.query_params
    provider = q.get("provider") or None
    status = q.get("status") or None
    cursor = q.get("cursor") or None
    if cursor is not None and not runs.valid_cursor(cursor):
        cursor = None  # the same strict, always-finite form the JSON API accepts
    found = await runs.page(
        deps(request), s.tenant, limit=PAGE_SIZE, cursor=cursor, provider=provider, status=status
    )
    rows = join(
        render(
            '<tr><td><a class="mono" href="/console/runs/$id">$id</a></td><td>$provider</td>'
            '<td>$state</td><td>$status</td><td class="mono">$upstream</td>'
            '<td class="num">$seq</td><td>$created</td><td>$updated</td></tr>',
            id=run["id"],
            provider=run["provider"],
            state=badge(run["state"]),
            status=badge(run["status"]),
            upstream=run["upstream_run_id"] or "",
            seq=run["sequence"],
            created=ts(run["created_at"]),
            updated=ts(run["updated_at"]),
        )
        for run in found.runs
    )
    if not found.runs:
        rows = Safe('<tr><td colspan="8" class="muted">No runs.</td></tr>')
    more = Safe("")
    if found.next_cursor:
        params = {"cursor": found.next_cursor, "provider": provider or "", "status": status or ""}
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
    return page("Runs", body, s, active="runs", flash=flash_of(request))


def _sub_label(sub_id: str, sub: dict[str, Any] | None) -> Safe:
    if sub is None:
        return render('<span class="muted mono">$id (removed)</span>', id=sub_id)
    if sub["kind"] == CALLBACK:
        # A run's callback is not one of the tenant's subscriptions (the API has no page for
        # it either): shown, not linked.
        return render(
            '<span class="mono">callback</span> <span class="muted">$url</span>', url=sub["url"]
        )
    return render(
        '<a class="mono" href="/console/subscriptions/$id">$id</a> '
        '<span class="muted">$desc</span>',
        id=sub_id,
        desc=sub["description"] or sub["url"],
    )


def _event_block(s: sessions.Session, e: dict[str, Any], view: deliveries.RunDeliveries) -> Safe:
    blocks = []
    for d in e["deliveries"]:
        sub_id = d["subscription_id"]
        blocks.append(
            render(
                '<div class="delivery" data-subscription="$id" data-state="$state">'
                "<h3>$label · $badge · $attempts attempt(s)$next</h3>$table</div>",
                id=sub_id,
                state=d["state"] or "",
                label=_sub_label(sub_id, view.subscriptions.get(sub_id)),
                badge=badge(d["state"]),
                attempts=d["attempts"],
                next=render(" · next try $t", t=ts(d["next_attempt_at"]))
                if d["next_attempt_at"]
                else "",
                table=attempts_table(view.attempts.get((e["id"], sub_id), []), show_event=False),
            )
        )
    if not blocks:
        blocks.append(Safe('<p class="muted">No subscription matched this event.</p>'))
    redeliver = (
        post_button(s, f"/console/events/{quote(e['id'])}/redeliver", "Redeliver", name="redeliver")
        if e["deliveries"]
        else Safe("")
    )
    return render(
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
        body=event_body.block(view.bodies[e["id"]]) if e["id"] in view.bodies else Safe(""),
        deliveries=join(blocks),
    )


async def run_page(request: Request, s: sessions.Session) -> Response:
    view = await deliveries.of_run(deps(request), s.tenant, request.path_params["run_id"])
    run = view.run
    blocks = [_event_block(s, e, view) for e in run["events"]]
    error = run.get("error")
    body = render(
        '<h1>Run <span class="mono">$id</span></h1><div class="card"><dl class="kv">'
        "<dt>provider</dt><dd>$provider</dd><dt>state</dt><dd>$state</dd>"
        '<dt>vendor status</dt><dd>$status</dd><dt>upstream run</dt><dd class="mono">$up</dd>'
        "<dt>agent</dt><dd>$agent</dd><dt>polls</dt><dd>$polls</dd>"
        "<dt>created</dt><dd>$created</dd><dt>updated</dt><dd>$updated</dd>"
        "<dt>metadata</dt><dd><code>$meta</code></dd><dt>callback</dt><dd>$cb</dd>"
        "<dt>error</dt><dd>$error</dd></dl></div>"
        "<h2>Status history and deliveries</h2>$blocks",
        id=run["id"],
        provider=run["provider"],
        state=badge(run["state"]),
        status=badge(run["status"]),
        up=run["upstream_run_id"] or "",
        agent=run["agent_id"] or "",
        polls=run["polls"],
        created=ts(run["created_at"]),
        updated=ts(run["updated_at"]),
        meta=dumps(run["metadata"]),
        cb=run["callback_url"] or "",
        error=f"{error.get('error')}: {error.get('message')}" if isinstance(error, dict) else "",
        blocks=join(blocks) if blocks else Safe('<p class="muted">No events yet.</p>'),
    )
    return page(f"Run {run['id']}", body, s, active="runs", flash=flash_of(request))


async def redeliver(request: Request, s: sessions.Session) -> Response:
    wanted = form_of(request).get("subscription_id") or None
    done = await deliveries.redeliver(
        deps(request), s.tenant, request.path_params["event_id"], wanted
    )
    back = (
        f"/console/runs/{quote(done.run_id)}"
        if done.run_id != deliveries.PING_LANE
        else f"/console/subscriptions/{quote(done.subscriptions[0])}"
        if done.subscriptions
        else "/console/runs"
    )
    return RedirectResponse(f"{back}?done=redelivered&n={len(done.subscriptions)}", 303)
