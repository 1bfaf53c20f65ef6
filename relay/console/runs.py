"""Console pages of runs: the list (counted, paged both ways, with each run's input and delivery
counts), one run as an events by subscribers grid, redeliver (to one subscriber) and erase (after
a confirmation). Data comes from relay/ops (runs, deliveries), as the JSON API's does."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from relay.console import event_body, live
from relay.console import session as sessions
from relay.console.html import Safe, badge, join, render, ts
from relay.console.pages import (
    attempts_table,
    bad_filter,
    confirm_page,
    deps,
    flash_of,
    form_of,
    link_button,
    page,
    pager,
    post_button,
)
from relay.ops import deliveries, runs
from relay.ops.errors import Invalid
from relay.ops.subscriptions import CALLBACK
from relay.store.client import dumps

PAGE_SIZE = 50


def _input_text(run: dict[str, Any]) -> str:
    """What the run was started for, in a few words (a Citedy domain, else the agent)."""
    given = run.get("input") or {}
    if isinstance(given, dict) and given.get("domain"):
        return str(given["domain"])
    return str(run.get("agent_id") or "")


def _delivered(counts: dict[str, int] | None, failing: int = 0) -> Safe:
    if not counts or not counts["total"]:
        return Safe('<span class="muted">no deliveries</span>')
    text = f"{counts['succeeded']}/{counts['total']} delivered"
    if failing:
        text += f", {failing} retrying"
    if counts["dead"]:
        return render('$t, <span class="badge bad">$k dead</span>', t=text, k=counts["dead"])
    return render("$t", t=text)


#: The runs list's `delivery` filter (relay/ops/runs.py `check_delivery`): value, label.
DELIVERY_CHOICES = (
    ("", "any"),
    ("dead", "a delivery dead-lettered"),
    ("failing", "a delivery retrying"),
)


def _filters_form(provider: str, status: str, delivery: str) -> Safe:
    options = join(
        render(
            '<option value="$v"$sel>$label</option>',
            v=value,
            label=label,
            sel=Safe(" selected") if value == delivery else Safe(""),
        )
        for value, label in DELIVERY_CHOICES
    )
    return render(
        '<form method="get" action="/console/runs" class="actions card">'
        '<div><label for="provider">provider</label>'
        '<input id="provider" name="provider" value="$provider"></div>'
        '<div><label for="status">state or vendor status</label>'
        '<input id="status" name="status" value="$status"></div>'
        '<div><label for="delivery">deliveries</label>'
        '<select id="delivery" name="delivery">$options</select></div>'
        '<button type="submit">Filter</button>'
        '<a href="/console/runs">Clear filters</a></form>',
        provider=provider,
        status=status,
        options=options,
    )


async def runs_page(request: Request, s: sessions.Session) -> Response:
    q = request.query_params
    provider = q.get("provider") or None
    status = q.get("status") or None
    delivery = q.get("delivery") or None
    cursor = q.get("cursor") or None
    before = q.get("before") or None
    try:
        found = await runs.page(
            deps(request),
            s.tenant,
            limit=PAGE_SIZE,
            cursor=cursor,
            before=before,
            provider=provider,
            status=status,
            delivery=delivery,
            known_provider=True,
            summarize=True,
        )
    except Invalid as exc:
        kept = {"provider": provider or "", "status": status or "", "delivery": delivery or ""}
        back = "/console/runs"
        label = "Back to the newest runs"
        if exc.field in ("cursor", "before") and any(kept.values()):
            back += "?" + "&".join(f"{k}={quote(v)}" for k, v in kept.items() if v)
            label = "Back to the newest runs of this filter"
        elif exc.field in ("provider", "delivery"):
            label = "Show all runs"
        return bad_filter(s, "Runs", exc.message, back, label, "runs")
    rows = join(
        render(
            '<tr class="run" data-outcome="$outcome"><td><a class="mono" href="/console/runs/$id">'
            "$id</a></td><td>$input</td><td>$provider</td><td>$outcome_badge</td>"
            '<td>$status</td><td>$delivered</td><td class="mono">$upstream</td>'
            "<td>$created</td><td>$updated</td></tr>",
            id=run["id"],
            input=_input_text(run),
            provider=run["provider"],
            outcome=run["outcome"],
            outcome_badge=badge(run["outcome"]),
            status=badge(run["status"]) if run["status"] else "",
            delivered=_delivered(found.deliveries.get(run["id"]), run["deliveries_failing"]),
            upstream=run["upstream_run_id"] or "",
            created=ts(run["created_at"]),
            updated=ts(run["updated_at"]),
        )
        for run in found.runs
    )
    empty = Safe("")
    if not found.runs:
        if status and not found.total:
            empty = render(
                '<div class="flash bad" role="alert">No run has the state or vendor status '
                "<b>$status</b>$provider. States are $states; vendor statuses are the "
                "vendor's own (queued, running, completed, failed, blocked, …). "
                '<a href="/console/runs">Show all runs</a></div>',
                status=status,
                provider=f" for provider {provider}" if provider else "",
                states=", ".join(runs.STATES),
            )
        elif delivery and not found.total:
            empty = render(
                '<p class="muted" data-empty="delivery">No run has $what now.</p>',
                what=dict(DELIVERY_CHOICES)[delivery],
            )
        elif cursor or before:
            empty = Safe(
                '<div class="flash bad" role="alert">This page is past the end of the list. '
                '<a href="/console/runs">Back to the newest runs</a></div>'
            )
        else:
            empty = Safe('<p class="muted">No runs yet.</p>')
    params = {"provider": provider or "", "status": status or "", "delivery": delivery or ""}
    nav = pager(
        "/console/runs",
        params,
        what="Runs",
        first=found.first,
        shown=len(found.runs),
        total=found.total,
        newer={"before": found.prev_cursor} if found.prev_cursor else None,
        older={"cursor": found.next_cursor} if found.next_cursor else None,
    )
    table = Safe("")
    if found.runs:
        table = render(
            "<table><thead><tr><th>run</th><th>input</th><th>provider</th><th>outcome</th>"
            "<th>vendor status</th><th>deliveries</th><th>upstream run</th><th>created</th>"
            "<th>updated</th></tr></thead><tbody>$rows</tbody></table>",
            rows=rows,
        )
    body = render(
        "<h1>Runs</h1>$form$empty$nav$table$nav",
        form=_filters_form(provider or "", status or "", delivery or ""),
        empty=empty,
        nav=nav,
        table=table,
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
        '<a class="mono" href="/console/subscriptions/$id">$id</a><br>'
        '<span class="muted">$desc</span>',
        id=sub_id,
        desc=sub["description"] or sub["url"],
    )


def _cell(
    s: sessions.Session,
    e: dict[str, Any],
    d: dict[str, Any] | None,
    view: deliveries.RunDeliveries,
) -> Safe:
    if d is None:
        return Safe('<td class="cell muted">not sent (filter)</td>')
    sub_id = d["subscription_id"]
    tried = view.attempts.get((e["id"], sub_id), [])
    details = Safe("")
    if tried:
        details = render(
            "<details><summary>$n attempt(s)</summary>$table</details>",
            n=d["attempts"] or len(tried),
            table=attempts_table(tried, show_event=False),
        )
    redeliver = Safe("")
    if sub_id in view.subscriptions:
        redeliver = post_button(
            s,
            f"/console/events/{quote(e['id'])}/redeliver",
            "Redeliver",
            cls="small",
            fields={"subscription_id": sub_id},
            name="redeliver",
            aria=f"Redeliver {e['id']} to {sub_id}",
        )
    nxt = render('<br><span class="muted">next try $t</span>', t=ts(d["next_attempt_at"]))
    behind = view.waiting_behind.get((e["id"], sub_id))
    if behind is not None:
        nxt = render(
            '<br><span class="waiting" data-behind="$n">waiting behind #$n$why</span>',
            n=behind[0],
            why=f" ({behind[1]})" if behind[1] else "",
        )
    last = ""
    if d["last_status_code"] or d["last_error"]:
        last = f"last: {d['last_status_code'] or ''} {d['last_error'] or ''}".strip()
    return render(
        '<td class="cell delivery" data-subscription="$sub" data-state="$state">$badge$next'
        '$last$details<div class="actions" style="margin-top:4px">$redeliver</div></td>',
        sub=sub_id,
        state=d["state"] or "",
        badge=badge(d["state"]),
        next=nxt
        if behind is not None or (d["next_attempt_at"] and d["state"] != "succeeded")
        else "",
        last=render('<br><span class="muted">$l</span>', l=last) if last else "",
        details=details,
        redeliver=redeliver,
    )


def _grid(s: sessions.Session, view: deliveries.RunDeliveries) -> Safe:
    events = view.run["events"]
    if not events:
        return Safe('<p class="muted">No events yet.</p>')
    sub_ids: list[str] = []
    for e in events:
        for d in e["deliveries"]:
            if d["subscription_id"] not in sub_ids:
                sub_ids.append(d["subscription_id"])
    head = join(
        render('<th scope="col">$label</th>', label=_sub_label(i, view.subscriptions.get(i)))
        for i in sub_ids
    )
    rows = []
    for e in events:
        by_sub = {d["subscription_id"]: d for d in e["deliveries"]}
        cells = join(_cell(s, e, by_sub.get(i), view) for i in sub_ids)
        body = event_body.block(view.bodies[e["id"]]) if e["id"] in view.bodies else Safe("")
        rows.append(
            render(
                '<tr class="event" id="$id"><th scope="row">#$seq $type $status'
                '<br><span class="muted mono">$id</span><br><span class="muted">$at</span>'
                "$body</th>$cells</tr>",
                id=e["id"],
                seq=e["sequence"],
                type=e["type"] if e["type"] != "run.status_changed" else "",
                status=badge(e["status"]) if e["status"] else "",
                at=ts(e["created_at"]),
                body=body,
                cells=cells
                if sub_ids
                else Safe('<td class="muted">No subscription matched this event.</td>'),
            )
        )
    return render(
        '<table class="grid"><thead><tr><th scope="col">event</th>$head</tr></thead>'
        "<tbody>$rows</tbody></table>",
        head=head if sub_ids else Safe('<th scope="col">deliveries</th>'),
        rows=join(rows),
    )


def _error(error: Any) -> Safe:
    """The vendor's or the relay's reason a run ended badly, every detail it gave (a 402's
    credits required and top-up link included)."""
    if not isinstance(error, dict):
        return Safe("")
    parts = [render("<b>$c</b>: $m", c=error.get("error") or "error", m=error.get("message") or "")]
    labels = {
        "status_code": "vendor answered",
        "credits_required": "credits required",
        "credits_available": "credits available",
    }
    for key, label in labels.items():
        if error.get(key) not in (None, ""):
            parts.append(render("$l: <b>$v</b>", l=label, v=error[key]))
    topup = error.get("topup")
    # Citedy's 402: {"topup_url", "recommended_package_credits", "recommended_package_price_usd"}
    link = topup.get("topup_url") if isinstance(topup, dict) else topup
    if isinstance(link, str) and link.startswith(("https://", "http://")):
        package = topup.get("recommended_package_credits") if isinstance(topup, dict) else None
        price = topup.get("recommended_package_price_usd") if isinstance(topup, dict) else None
        offer = f" ({package} credits for {price} USD)" if package and price else ""
        parts.append(render('<a href="$u" rel="noreferrer">Top up credits</a>$o', u=link, o=offer))
    shown = {"error", "message", "topup", *labels}
    rest = {k: v for k, v in error.items() if k not in shown and v not in (None, "")}
    if rest:
        parts.append(render("<code>$r</code>", r=dumps(rest)))
    return render('<div class="run-error">$p</div>', p=join(parts, "<br>"))


async def run_page(request: Request, s: sessions.Session) -> Response:
    view = await deliveries.of_run(deps(request), s.tenant, request.path_params["run_id"])
    run = view.run
    given = run.get("input")
    fields: list[tuple[str, Any]] = [
        ("provider", run["provider"]),
        ("outcome", badge(run["outcome"])),
        ("relay state", badge(run["state"])),
        ("vendor status", badge(run["status"]) if run["status"] else ""),
        ("input", render("<code>$v</code>", v=dumps(given)) if given else ""),
        (
            "upstream run",
            render('<span class="mono">$v</span>', v=run["upstream_run_id"])
            if run["upstream_run_id"]
            else "",
        ),
        ("agent", run["agent_id"] or ""),
        ("polls", run["polls"] or ""),
        ("created", ts(run["created_at"])),
        ("updated", ts(run["updated_at"])),
        (
            "metadata",
            render("<code>$v</code>", v=dumps(run["metadata"])) if run["metadata"] else "",
        ),
        ("callback", run["callback_url"] or ""),
        ("error", _error(run.get("error"))),
        ("job error", _error(run.get("job_error"))),
    ]
    kv = join(render("<dt>$k</dt><dd>$v</dd>", k=k, v=v) for k, v in fields if v not in ("", None))
    erase = link_button(
        f"/console/runs/{quote(run['id'])}/erase", "Erase", cls="danger", name="erase"
    )
    body = render(
        '<div class="actions"><h1>Run <span class="mono">$id</span></h1>$erase</div>'
        '$live<div class="card"><dl class="kv">$kv</dl></div>'
        "<h2>Events &times; subscribers</h2>$grid",
        id=run["id"],
        erase=erase,
        live=live.toggle(request),
        kv=kv,
        grid=_grid(s, view),
    )
    return page(
        f"Run {run['id']}",
        body,
        s,
        active="runs",
        flash=flash_of(request),
        head=live.head(request),
    )


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


async def erase_confirm(request: Request, s: sessions.Session) -> Response:
    run = await runs.get(deps(request), s.tenant, request.path_params["run_id"])
    back = f"/console/runs/{quote(run['id'])}"
    return confirm_page(
        s,
        title=f"Erase run {run['id']}?",
        question=render(
            "<p>This stops tracking the run and deletes it now with everything about it: its "
            "$n event(s) and their bodies, the vendor's snapshots, delivery records, pending "
            "deliveries and dead letters. It cannot be undone.</p>",
            n=len(run["events"]),
        ),
        action=f"{back}/erase",
        label=f"Erase {run['id']}",
        cancel=back,
        name="confirm-erase",
    )


async def erase(request: Request, s: sessions.Session) -> Response:
    """Erase the run now (relay/ops/runs.py `erase`), then back to the list, naming it."""
    run_id = request.path_params["run_id"]
    await runs.erase(deps(request), s.tenant, run_id)
    return RedirectResponse(f"/console/runs?done=erased&id={quote(run_id)}", 303)
