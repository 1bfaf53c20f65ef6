"""One Starlette app serving both simulated vendors plus the `/_sim/` admin surface.

Citedy answers at its real paths and Autoposting under `/autoposting`, so one port stands in for
both vendors and each client's base URL differs only by the prefix. Faults (latency, 429s, 500s,
malformed bodies, a real per-key rate limit) are injected in one gate in front of every vendor
endpoint so both vendors misbehave the same way when asked to. The admin endpoints need no auth:
this is a test fixture and must never face the internet.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from relay.devtools.simulators import autoposting, citedy
from relay.devtools.simulators.state import ANONYMOUS, Schedule, SimConfig, SimState, key_id

#: What a proxy hiccup looks like: 200, a JSON content type, and a body cut off mid-document.
MALFORMED_BODY = b'{"run": {"id": "3f1c'
AUTOPOSTING_PREFIX = "/autoposting"
MAX_PATH_STATUSES = 20

Endpoint = Callable[[Request], Awaitable[Response]]
Handler = Callable[[Request, SimState, str], Awaitable[Response]]


class ErrorFactory(Protocol):
    def __call__(
        self,
        status: int,
        code: str,
        message: str,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> JSONResponse: ...


@dataclass(frozen=True)
class Vendor:
    """How one vendor authenticates and shapes its errors; everything else is shared."""

    authenticate: Callable[[Request, SimState], str | Response]
    error: ErrorFactory


CITEDY = Vendor(citedy.authenticate, citedy.error)
AUTOPOSTING = Vendor(autoposting.authenticate, autoposting.error)
#: The prefixes of the vendor endpoints' route names, as `/_sim/unauthorized` takes them.
VENDOR_NAMES = ("citedy", "autoposting")


def _rate_limited(vendor: Vendor, retry_after: int, message: str) -> Response:
    return vendor.error(
        429,
        "rate_limited",
        message,
        headers={"Retry-After": str(retry_after)},
        extra={"retry_after": retry_after},
    )


def _fault(state: SimState, vendor: Vendor) -> Response | None:
    if state.roll(state.config.error_rate):
        return vendor.error(500, "internal_error", "Simulated internal error.")
    if state.roll(state.config.malformed_rate):
        state.stats.malformed += 1
        return Response(MALFORMED_BODY, status_code=200, media_type="application/json")
    return None


async def _gate(
    request: Request, state: SimState, vendor: Vendor, name: str, handler: Handler
) -> Response:
    """Count, delay, authenticate, throttle and maybe break the call, then run the handler.
    Every request counts toward the rate statistics, including the ones refused, because the
    vendor sees those too."""
    auth = vendor.authenticate(request, state)
    who = key_id(auth) if isinstance(auth, str) else ANONYMOUS
    state.stats.record_request(name, who, state.clock())
    config = state.config
    # The request is read in full before the latency, as a real vendor has it: a client that gives
    # up (or is killed) during the wait still gets its start processed and charged.
    await request.body()
    if config.latency_ms > 0:
        await asyncio.sleep(config.latency_ms / 1000)
    if state.forced_unauthorized(name.partition(".")[0], state.clock()):
        return vendor.error(401, "unauthorized", "Authentication required.")
    if not isinstance(auth, str):
        return auth
    wait = state.throttle(who, state.clock())
    if wait is not None:
        return _rate_limited(vendor, max(1, math.ceil(wait)), "Too many requests for this API key.")
    if state.roll(config.rate_limit_rate):
        return _rate_limited(vendor, config.retry_after, "Rate limit exceeded; retry later.")
    faults_first = config.fault_phase == "before"
    if faults_first and (fault := _fault(state, vendor)):
        return fault
    response = await handler(request, state, auth)
    if not faults_first and (fault := _fault(state, vendor)):
        return fault
    return response


def _vendor_route(
    path: str, method: str, state: SimState, vendor: Vendor, name: str, handler: Handler
) -> Route:
    async def endpoint(request: Request) -> Response:
        response = await _gate(request, state, vendor, name, handler)
        state.stats.record_status(response.status_code)
        return response

    return Route(path, endpoint, methods=[method], name=name)


def _bad(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": "invalid_request", "message": message}, status_code=status)


async def _admin_body(request: Request) -> dict[str, Any] | Response:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        return _bad("body must be valid JSON")
    if not isinstance(body, dict):
        return _bad("body must be a JSON object")
    return body


def _api_key_field(body: Mapping[str, Any]) -> str | None:
    key = body.get("api_key")
    return key if isinstance(key, str) and key else None


def _statuses_field(body: Mapping[str, Any]) -> list[str] | str | None:
    """The custom status path, None for the default, or an error message."""
    statuses = body.get("statuses")
    if statuses is None:
        return None
    if (
        not isinstance(statuses, list)
        or not 1 <= len(statuses) <= MAX_PATH_STATUSES
        or not all(isinstance(s, str) and 1 <= len(s) <= 64 for s in statuses)
    ):
        return f"statuses must be a list of 1-{MAX_PATH_STATUSES} strings of 1-64 characters"
    return statuses


def _admin_routes(state: SimState) -> list[Route]:
    async def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def config(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(state.config.as_dict())
        body = await _admin_body(request)
        if isinstance(body, Response):
            return body
        try:
            return JSONResponse(state.update_config(body).as_dict())
        except ValueError as exc:
            return _bad(str(exc))

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"ok": True, "config": state.config.as_dict()})

    async def credits(request: Request) -> Response:
        body = await _admin_body(request)
        if isinstance(body, Response):
            return body
        key, balance = _api_key_field(body), body.get("balance")
        if key is None:
            return _bad("api_key must be a non-empty string")
        if not isinstance(balance, int) or isinstance(balance, bool) or balance < 0:
            return _bad("balance must be an integer >= 0")
        state.credits[key] = balance
        return JSONResponse({"api_key_id": key_id(key), "balance": balance})

    async def revoke(request: Request) -> Response:
        body = await _admin_body(request)
        if isinstance(body, Response):
            return body
        key = _api_key_field(body)
        if key is None:
            return _bad("api_key must be a non-empty string")
        state.revoked.add(key)
        return JSONResponse({"api_key_id": key_id(key), "revoked": True})

    async def unauthorized(request: Request) -> Response:
        """Answer 401 to every call of one vendor (or both) for `seconds` from now (0 ends it)."""
        body = await _admin_body(request)
        if isinstance(body, Response):
            return body
        vendor, seconds = body.get("vendor", "all"), body.get("seconds")
        if vendor not in VENDOR_NAMES and vendor != "all":
            return _bad(f"vendor must be one of {', '.join(VENDOR_NAMES)} or all")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds >= 0:
            return _bad("seconds must be a number >= 0")
        until = state.clock() + float(seconds)
        for name in VENDOR_NAMES if vendor == "all" else (vendor,):
            state.unauthorized_until[name] = until
        return JSONResponse({"vendor": vendor, "until": until})

    async def create_agent_run(request: Request) -> Response:
        body = await _admin_body(request)
        if isinstance(body, Response):
            return body
        statuses = _statuses_field(body)
        if isinstance(statuses, str):
            return _bad(statuses)
        error_text = body.get("error")
        if error_text is not None and not isinstance(error_text, str):
            return _bad("error must be a string or null")
        run = autoposting.create_run(state, request.path_params["agentId"], statuses, error_text)
        data = autoposting.render_run(run, state.clock())
        return JSONResponse({"success": True, "data": data}, status_code=201)

    async def schedule(request: Request) -> Response:
        body = await _admin_body(request)
        if isinstance(body, Response):
            return body
        every = body.get("every_seconds")
        if every is not None and (
            isinstance(every, bool) or not isinstance(every, int | float) or not every >= 0.01
        ):
            return _bad("every_seconds must be a number >= 0.01, or null to stop the schedule")
        agent_id = request.path_params["agentId"]
        now = state.clock()
        autoposting.materialize_schedules(state, now)
        state.schedules.pop(agent_id, None)
        if every is not None:
            state.schedules[agent_id] = Schedule(agent_id, float(every), now)
        return JSONResponse({"agentId": agent_id, "every_seconds": every})

    async def paging(request: Request) -> Response:
        """`{"honoured": false}`: this agent's runs list ignores limit/offset from now on."""
        body = await _admin_body(request)
        if isinstance(body, Response):
            return body
        honoured = body.get("honoured")
        if not isinstance(honoured, bool):
            return _bad("honoured must be true or false")
        agent_id = request.path_params["agentId"]
        if honoured:
            state.paging_ignored.discard(agent_id)
        else:
            state.paging_ignored.add(agent_id)
        return JSONResponse({"agentId": agent_id, "honoured": honoured})

    async def delete_run(request: Request) -> Response:
        if state.delete_run(request.path_params["runId"]):
            return JSONResponse({"deleted": True})
        return JSONResponse({"error": "not_found", "message": "No such run."}, status_code=404)

    async def stats(request: Request) -> Response:
        return JSONResponse(state.stats.snapshot())

    agents = "/_sim/autoposting/agents/{agentId}"
    return [
        Route("/_sim/health", health, methods=["GET"]),
        Route("/_sim/config", config, methods=["GET", "POST"]),
        Route("/_sim/reset", reset, methods=["POST"]),
        Route("/_sim/credits", credits, methods=["POST"]),
        Route("/_sim/revoke", revoke, methods=["POST"]),
        Route("/_sim/unauthorized", unauthorized, methods=["POST"]),
        Route(f"{agents}/runs", create_agent_run, methods=["POST"]),
        Route(f"{agents}/schedule", schedule, methods=["POST"]),
        Route(f"{agents}/paging", paging, methods=["POST"]),
        Route("/_sim/runs/{runId}", delete_run, methods=["DELETE"]),
        Route("/_sim/stats", stats, methods=["GET"]),
    ]


def create_app(config: SimConfig | None = None) -> Starlette:
    """Both vendors and the admin surface; the state is reachable as `app.state.sim`."""
    state = SimState(config)
    agent_runs = f"{AUTOPOSTING_PREFIX}/agents/{{agentId}}/runs"
    vendor_routes = [
        _vendor_route(
            citedy.BASE_PATH, "POST", state, CITEDY, "citedy.create_run", citedy.create_run
        ),
        _vendor_route(
            f"{citedy.BASE_PATH}/{{runId}}", "GET", state, CITEDY, "citedy.get_run", citedy.get_run
        ),
        _vendor_route(
            f"{agent_runs}/{{runId}}",
            "GET",
            state,
            AUTOPOSTING,
            "autoposting.get_run",
            autoposting.get_run,
        ),
        _vendor_route(
            agent_runs, "GET", state, AUTOPOSTING, "autoposting.list_runs", autoposting.list_runs
        ),
    ]
    app = Starlette(routes=[*vendor_routes, *_admin_routes(state)])
    app.state.sim = state
    return app


def serve(
    host: str, port: int, config: SimConfig | None = None, *, access_log: bool = True
) -> None:
    """Run the simulators in the foreground (what `relay simulate --port` calls)."""
    uvicorn.run(create_app(config), host=host, port=port, log_level="info", access_log=access_log)
