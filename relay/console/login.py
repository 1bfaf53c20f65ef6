"""Console login and logout: an API key is checked once (never stored) and exchanged for a
server-side session (relay/console/session.py)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from relay.api.auth import identify
from relay.console import session as sessions
from relay.console.html import render
from relay.console.pages import forbidden, page, safe_next, session_store


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
        next=safe_next(request.query_params.get("next")),
    )
    response = page("Log in", body, flash=error, flash_bad=bool(error), status=status)
    if fresh:
        sessions.set_login_cookie(request, response, token)
    return response


async def login_form(request: Request) -> Response:
    if await sessions.current(request) is not None:
        return RedirectResponse(safe_next(request.query_params.get("next")), 303)
    return _login_page(request)


async def login(request: Request) -> Response:
    if not sessions.same_origin(request):
        return forbidden(None, "The request came from another site.")
    form = await sessions.read_form(request)
    expected = request.cookies.get(sessions.LOGIN_COOKIE)
    if form is None or not sessions.same_token(expected, form.get("login_token")):
        return forbidden(None, "The login form expired or came from elsewhere; reload it.")
    r = session_store(request)
    client = request.client.host if request.client else "unknown"
    if await sessions.login_blocked(r, client):
        return _login_page(request, "Too many failed attempts; wait a few minutes.", 429)
    who = await identify(request, form.get("api_key", "").strip())
    if who is None:
        await sessions.login_failed(r, client)
        return _login_page(request, "That API key is not valid.", 401)
    lifetime = request.app.state.settings.session_lifetime
    s = await sessions.create(r, who.tenant, who.key_id, lifetime)
    response = RedirectResponse(safe_next(form.get("next")), 303)
    sessions.set_session_cookie(request, response, s, lifetime)
    return response


async def logout(request: Request, s: sessions.Session) -> Response:
    await sessions.destroy(session_store(request), s)
    response = RedirectResponse("/console/login", 303)
    sessions.clear_session_cookie(response)
    return response


async def index(request: Request) -> Response:
    return RedirectResponse("/console/runs", 303)
