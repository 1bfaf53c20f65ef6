"""Console forms of subscriptions: create, edit and delete (with its confirmation page), in
the same shape as the API's inputs (relay/ops/inputs.py); a bad form is shown again with its
error. Every POST answers with a redirect."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from relay.console import session as sessions
from relay.console.html import Safe, join, render
from relay.console.pages import (
    confirm_page,
    csrf_field,
    deps,
    form_of,
    page,
    session_store,
)
from relay.console.subscriptions import sub_path
from relay.delivery.events import EVENT_TYPES
from relay.ops import subscriptions
from relay.ops.errors import Invalid, invalid_from
from relay.ops.inputs import SubscriptionCreate, SubscriptionPatch


def _providers(request: Request) -> list[str]:
    return list(deps(request).providers)


def _parse_headers(raw: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise Invalid("headers", f"headers: line {number} is not 'Name: value'")
        out[name.strip()] = value.strip()
    return out


def _parse_rate(raw: str) -> float | None:
    raw = raw.strip()
    if not raw:
        return None
    try:
        return float(raw)
    except ValueError:
        raise Invalid("rate_limit", "rate_limit: a number of deliveries per second") from None


def _form_values(form: dict[str, str], providers: list[str]) -> dict[str, Any]:
    """The form as the operations' input shape (headers and rate limit parsed later)."""
    statuses = [x.strip() for x in form.get("statuses", "").split(",") if x.strip()]
    return {
        "url": form.get("url", "").strip(),
        "description": form.get("description", ""),
        "filter": {
            "providers": [p for p in providers if form.get(f"provider_{p}")],
            "statuses": statuses,
            "event_types": [t for t in EVENT_TYPES if form.get(f"type_{t}")],
        },
    }


def _sub_form(
    s: sessions.Session,
    *,
    action: str,
    values: dict[str, Any],
    providers: list[str],
    header_names: list[str],
    rate: float | None,
    editing: bool,
) -> Safe:
    flt = values.get("filter") or {}

    def checks(prefix: str, options: list[str], chosen: list[str]) -> Safe:
        return join(
            render(
                '<label class="inline"><input type="checkbox" id="$id" name="$id" value="on"'
                "$checked> $o</label>",
                id=f"{prefix}_{o}",
                o=o,
                checked=Safe(" checked") if o in chosen else Safe(""),
            )
            for o in options
        )

    if editing:
        headers_help = render(
            "Headers now sent: <b>$names</b> (values are write-only and never shown). Leave "
            "blank to keep them; type new lines to replace them all.",
            names=", ".join(header_names) or "none",
        )
        clear = Safe(
            '<label class="inline"><input type="checkbox" id="clear_headers" '
            'name="clear_headers" value="on"> remove every extra header</label>'
        )
    else:
        headers_help = Safe(
            "Up to 10, one <code>Name: value</code> a line. Values are "
            "write-only: only names are shown back."
        )
        clear = Safe("")
    return render(
        '<form method="post" action="$action" class="card" style="max-width:820px">$csrf'
        '<div class="field"><label for="url">URL</label>'
        '<input id="url" name="url" type="url" required value="$url"></div>'
        '<div class="field"><label for="description">description</label>'
        '<input id="description" name="description" value="$desc"></div>'
        "<fieldset><legend>providers (none checked: every provider)</legend>$providers"
        "</fieldset>"
        "<fieldset><legend>event types (none checked: every type)</legend>$types</fieldset>"
        '<div class="field"><label for="statuses">statuses, comma-separated (blank: every '
        'status)</label><input id="statuses" name="statuses" value="$statuses"></div>'
        '<div class="field"><label for="headers">extra headers</label>'
        '<p class="muted" id="headers-help" style="margin:2px 0">$headers_help</p>'
        '<textarea id="headers" name="headers" aria-describedby="headers-help" '
        'autocomplete="off"></textarea>$clear</div>'
        '<div class="field"><label for="rate_limit">rate limit, deliveries per second (blank: '
        'none)</label><input id="rate_limit" name="rate_limit" inputmode="decimal" '
        'value="$rate"></div>'
        '<button type="submit" class="primary" data-action="save">$label</button></form>',
        action=action,
        csrf=csrf_field(s),
        url=values.get("url") or "",
        desc=values.get("description") or "",
        providers=checks("provider", providers, flt.get("providers") or []),
        types=checks("type", list(EVENT_TYPES), flt.get("event_types") or []),
        statuses=", ".join(flt.get("statuses") or []),
        headers_help=headers_help,
        clear=clear,
        rate="" if rate is None else f"{rate:g}",
        label="Save changes" if editing else "Create subscription",
    )


def _form_page(
    s: sessions.Session, title: str, form: Safe, error: str = "", status: int = 200
) -> Response:
    body = render("<h1>$t</h1>$f", t=title, f=form)
    return page(title, body, s, active="subs", flash=error, flash_bad=bool(error), status=status)


async def new_form(request: Request, s: sessions.Session) -> Response:
    form = _sub_form(
        s,
        action="/console/subscriptions",
        values={},
        providers=_providers(request),
        header_names=[],
        rate=None,
        editing=False,
    )
    return _form_page(s, "New subscription", form)


async def create(request: Request, s: sessions.Session) -> Response:
    form = form_of(request)
    values = _form_values(form, _providers(request))
    rate: float | None = None
    try:
        rate = _parse_rate(form.get("rate_limit", ""))
        body = SubscriptionCreate.model_validate(
            {**values, "headers": _parse_headers(form.get("headers", "")), "rate_limit": rate}
        )
        made = await subscriptions.create(deps(request), s.tenant, body)
    except (Invalid, ValidationError) as exc:
        message = exc.message if isinstance(exc, Invalid) else invalid_from(exc).message
        again = _sub_form(
            s,
            action="/console/subscriptions",
            values=values,
            providers=_providers(request),
            header_names=[],
            rate=rate,
            editing=False,
        )
        return _form_page(s, "New subscription", again, message, 400)
    token = await sessions.put_flash(session_store(request), s, made.secret)
    sub_id = made.subscription["id"]
    return RedirectResponse(f"{sub_path(sub_id)}?done=created&secret={token}", 303)


async def edit_form(request: Request, s: sessions.Session) -> Response:
    sub = await subscriptions.get(deps(request), s.tenant, request.path_params["sub_id"])
    form = _sub_form(
        s,
        action=f"{sub_path(sub['id'])}/edit",
        values=sub,
        providers=_providers(request),
        header_names=sub["headers"],
        rate=sub["rate_limit"],
        editing=True,
    )
    return _form_page(s, f"Edit {sub['id']}", form)


async def edit(request: Request, s: sessions.Session) -> Response:
    d, sub_id = deps(request), request.path_params["sub_id"]
    form = form_of(request)
    values = _form_values(form, _providers(request))
    rate: float | None = None
    try:
        rate = _parse_rate(form.get("rate_limit", ""))
        change: dict[str, Any] = {**values, "rate_limit": rate or 0.0}
        if form.get("clear_headers"):
            change["headers"] = {}
        elif form.get("headers", "").strip():
            change["headers"] = _parse_headers(form["headers"])
        body = SubscriptionPatch.model_validate(change)
        sub = await subscriptions.patch(d, s.tenant, sub_id, body, by="in the console")
    except (Invalid, ValidationError) as exc:
        current = await subscriptions.get(d, s.tenant, sub_id)  # another tenant's: 404
        message = exc.message if isinstance(exc, Invalid) else invalid_from(exc).message
        again = _sub_form(
            s,
            action=f"{sub_path(sub_id)}/edit",
            values=values,
            providers=_providers(request),
            header_names=current["headers"],
            rate=rate,
            editing=True,
        )
        return _form_page(s, f"Edit {sub_id}", again, message, 400)
    return RedirectResponse(f"{sub_path(sub['id'])}?done=saved", 303)


async def delete_confirm(request: Request, s: sessions.Session) -> Response:
    sub = await subscriptions.get(deps(request), s.tenant, request.path_params["sub_id"])
    return confirm_page(
        s,
        title=f"Delete subscription {sub['id']}?",
        question=render(
            "<p>Deliveries to <code>$url</code> stop, and every delivery still queued or "
            "dead-lettered for it is dropped. It cannot be undone.</p>",
            url=sub["url"],
        ),
        action=f"{sub_path(sub['id'])}/delete",
        label=f"Delete {sub['id']}",
        cancel=sub_path(sub["id"]),
        name="confirm-delete",
    )


async def delete(request: Request, s: sessions.Session) -> Response:
    sub_id = request.path_params["sub_id"]
    await subscriptions.delete(deps(request), s.tenant, sub_id)
    return RedirectResponse(f"/console/subscriptions?done=deleted&id={quote(sub_id)}", 303)


# ------------------------------------------------------------------------------- one of them
