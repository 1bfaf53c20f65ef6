"""The Autoposting agent-run API: the `{"success", "data"}` envelope, bearer or `x-api-key`
credentials, and runs that move along a status path as time passes. Paths are configurable because
the vendor's guides use statuses its enum omits (`pending`, `succeeded`, `partial`), and a relay
that only copes with the enum would break the day one shows up."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from relay.devtools.simulators.state import AgentRun, SimState, iso, step_index

KEY_PREFIX = "sk-social-"
DEFAULT_PATH = ("queued", "running", "completed")
TERMINAL = frozenset({"completed", "failed", "succeeded", "partial", "cancelled", "canceled"})
UNSUCCESSFUL = frozenset({"failed", "cancelled", "canceled"})
MAX_BACKFILL = 100
DEFAULT_LIMIT = 50
MAX_LIMIT = 100


def error(
    status: int,
    code: str,
    message: str,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    body = {"success": False, "error": code, "message": message, **(extra or {})}
    return JSONResponse(body, status_code=status, headers=headers)


def authenticate(request: Request, state: SimState) -> str | Response:
    """Either credential style the contract allows; the bearer header wins when both are sent."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    candidates = [token.strip()] if scheme.lower() == "bearer" else []
    candidates.append(request.headers.get("x-api-key", "").strip())
    for key in candidates:
        if key.startswith(KEY_PREFIX) and key != KEY_PREFIX and key not in state.revoked:
            return key
    return error(401, "unauthorized", "Authentication required.")


def create_run(
    state: SimState,
    agent_id: str,
    statuses: Sequence[str] | None = None,
    error_text: str | None = None,
    created_at: float | None = None,
) -> AgentRun:
    run = AgentRun(
        id="run_" + uuid.uuid4().hex[:26].upper(),
        agent_id=agent_id,
        created_at=state.clock() if created_at is None else created_at,
        step_seconds=state.config.step_seconds,
        path=tuple(statuses) if statuses else DEFAULT_PATH,
        error=error_text,
        seq=state.next_seq(),
    )
    state.agent_runs[run.id] = run
    state.stats.runs_created += 1
    return run


def materialize_schedules(state: SimState, now: float) -> None:
    """Create the runs scheduled agents would have started by `now`, backdated to their start
    times so they show the status they would have reached. A long-idle schedule backfills at most
    MAX_BACKFILL runs rather than thousands."""
    for schedule in state.schedules.values():
        due = int((now - schedule.anchor) // schedule.every_seconds)
        if due <= schedule.ticks_done:
            continue
        for tick in range(max(schedule.ticks_done + 1, due - MAX_BACKFILL + 1), due + 1):
            create_run(
                state, schedule.agent_id, created_at=schedule.anchor + tick * schedule.every_seconds
            )
        schedule.ticks_done = due


def render_run(run: AgentRun, now: float) -> dict[str, Any]:
    index = step_index(run.created_at, run.step_seconds, now, len(run.path))
    status = run.path[index]
    final = index == len(run.path) - 1
    done = final and status in TERMINAL
    posts = 0
    if done and status not in UNSUCCESSFUL:
        posts = 1 + int(hashlib.sha256(run.id.encode()).hexdigest(), 16) % 3
    failed_text = "Agent run failed." if status == "failed" else None
    return {
        "id": run.id,
        "agentId": run.agent_id,
        "status": status,
        "postsGenerated": posts,
        "tokensUsed": index * 350 + posts * 120,
        "error": (run.error or failed_text) if final else None,
        "startedAt": iso(run.created_at),
        "completedAt": iso(run.created_at + index * run.step_seconds) if done else None,
    }


async def get_run(request: Request, state: SimState, api_key: str) -> Response:
    now = state.clock()
    materialize_schedules(state, now)
    run = state.agent_runs.get(str(request.path_params["runId"]))
    if run is None or run.agent_id != request.path_params["agentId"]:
        return error(404, "not_found", "Run not found.")
    state.stats.record_get(run.id)
    return JSONResponse({"success": True, "data": render_run(run, now)})


def _int_param(request: Request, name: str, default: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or int(raw) > high:
        raise ValueError(f"{name} must be an integer between 0 and {high}")
    return int(raw)


async def list_runs(request: Request, state: SimState, api_key: str) -> Response:
    """An agent's runs, newest first; `limit`/`offset` page them, `total` counts them all."""
    try:
        limit = _int_param(request, "limit", DEFAULT_LIMIT, MAX_LIMIT)
        offset = _int_param(request, "offset", 0, 1_000_000)
    except ValueError as exc:
        return error(400, "invalid_request", str(exc))
    now = state.clock()
    materialize_schedules(state, now)
    agent_id = request.path_params["agentId"]
    if agent_id in state.paging_ignored:
        limit, offset = DEFAULT_LIMIT, 0
    runs = sorted(
        (run for run in state.agent_runs.values() if run.agent_id == agent_id),
        key=lambda run: (run.created_at, run.seq),
        reverse=True,
    )
    page = [render_run(run, now) for run in runs[offset : offset + limit]]
    return JSONResponse({"success": True, "data": {"runs": page, "total": len(runs)}})
