"""The console's routes: which page or action answers which path. Pages live per resource
(login, runs, subscriptions, notices, search and deliveries, the tenant's watches, connections and
usage); every read and change goes through relay/ops, the same operations the JSON API calls, and
every id is checked against the session's tenant (another tenant's run, event, subscription or
watch is a 404, as in the API). An action that cannot be undone answers a GET with its
confirmation page and acts on the POST that page sends; every POST answers with a redirect."""

from __future__ import annotations

from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from relay.console import (
    login,
    notices,
    runs,
    search,
    subscription_forms,
    subscriptions,
    tenant,
)
from relay.console import session as sessions
from relay.console.html import esc
from relay.console.pages import authed, not_found


async def not_found_page(request: Request) -> Response:
    return not_found(await sessions.current(request), "page")


async def script(request: Request) -> Response:
    body = (resources.files("relay.console") / "static" / "console.js").read_bytes()
    return Response(
        body,
        media_type="text/javascript",
        headers={"cache-control": "max-age=300", "x-content-type-options": "nosniff"},
    )


def routes() -> list[Route]:
    sub = "/console/subscriptions/{sub_id}"
    return [
        Route("/console", login.index, methods=["GET"]),
        Route("/console/", login.index, methods=["GET"]),
        Route("/console/assets/console.js", script, methods=["GET"]),
        Route("/console/login", login.login_form, methods=["GET"]),
        Route("/console/login", login.login, methods=["POST"]),
        Route("/console/logout", authed(login.logout), methods=["POST"]),
        Route("/console/runs", authed(runs.runs_page), methods=["GET"]),
        Route("/console/runs/{run_id}", authed(runs.run_page), methods=["GET"]),
        Route("/console/runs/{run_id}/erase", authed(runs.erase_confirm), methods=["GET"]),
        Route("/console/runs/{run_id}/erase", authed(runs.erase), methods=["POST"]),
        Route("/console/events/{event_id}/redeliver", authed(runs.redeliver), methods=["POST"]),
        Route("/console/deliveries", authed(search.deliveries_page), methods=["GET"]),
        Route("/console/search", authed(search.search_page), methods=["GET"]),
        Route("/console/subscriptions", authed(subscriptions.list_page), methods=["GET"]),
        Route("/console/subscriptions", authed(subscription_forms.create), methods=["POST"]),
        Route("/console/subscriptions/new", authed(subscription_forms.new_form), methods=["GET"]),
        Route(sub, authed(subscriptions.sub_page), methods=["GET"]),
        Route(f"{sub}/edit", authed(subscription_forms.edit_form), methods=["GET"]),
        Route(f"{sub}/edit", authed(subscription_forms.edit), methods=["POST"]),
        Route(f"{sub}/delete", authed(subscription_forms.delete_confirm), methods=["GET"]),
        Route(f"{sub}/delete", authed(subscription_forms.delete), methods=["POST"]),
        Route(f"{sub}/enable", authed(subscriptions.enable), methods=["POST"]),
        Route(f"{sub}/disable", authed(subscriptions.disable_confirm), methods=["GET"]),
        Route(f"{sub}/disable", authed(subscriptions.disable), methods=["POST"]),
        Route(f"{sub}/rotate-secret", authed(subscriptions.rotate_confirm), methods=["GET"]),
        Route(f"{sub}/rotate-secret", authed(subscriptions.rotate), methods=["POST"]),
        Route(f"{sub}/test", authed(subscriptions.test), methods=["POST"]),
        Route(f"{sub}/recover", authed(subscriptions.recover_confirm), methods=["GET"]),
        Route(f"{sub}/recover", authed(subscriptions.recover), methods=["POST"]),
        Route("/console/notices", authed(notices.notices_page), methods=["GET"]),
        Route("/console/notices/acknowledge", authed(notices.acknowledge), methods=["POST"]),
        Route("/console/watches", authed(tenant.watches_page), methods=["GET"]),
        Route(
            "/console/watches/{watch_id}/refresh", authed(tenant.refresh_watch), methods=["POST"]
        ),
        Route("/console/connections", authed(tenant.connections_page), methods=["GET"]),
        Route("/console/usage", authed(tenant.usage_page), methods=["GET"]),
        Route("/console/{rest:path}", not_found_page, methods=["GET"]),
    ]


__all__ = ["esc", "routes"]
