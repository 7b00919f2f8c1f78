"""The server-rendered dashboard: alerts, audit queue, monitor health, drift charts as inline SVG
(no scripts, no external assets, so it works offline). Signed in with an API key kept in an
HTTP-only, same-site cookie."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import Connection

from tripwire.runtime import queries
from tripwire.runtime.api.deps import EngineDep, KeysDep, ServiceDep
from tripwire.runtime.api.monitors import monitor_list
from tripwire.runtime.api.schemas import MonitorStatus
from tripwire.runtime.drift import change_points

COOKIE = "tripwire_key"

router = APIRouter(include_in_schema=False)

_env = Environment(
    loader=PackageLoader("tripwire.runtime", "templates"), autoescape=select_autoescape(["html"])
)


def render_login(error: str | None) -> str:
    return _env.get_template("login.html").render(error=error)


def _chart(
    agent: str, values: list[float], alarms: int, w: int = 360, h: int = 90
) -> dict[str, Any]:
    n = len(values)
    lo, hi = 0.0, max(1.0, max(values, default=1.0))
    step = w / max(1, n - 1)
    pts = " ".join(
        f"{i * step:.1f},{h - 4 - (v - lo) / (hi - lo) * (h - 8):.1f}" for i, v in enumerate(values)
    )
    cps = [round(i * step, 1) for i in change_points(values)]
    return {
        "agent": agent,
        "feature": "monitor score",
        "w": w,
        "h": h,
        "points": pts,
        "cps": cps,
        "n": n,
        "alarms": alarms,
    }


def render_dashboard(conn: Connection, tenant: int, monitors: list[MonitorStatus]) -> str:
    n_events = queries.count_events(conn, tenant)
    alerts = queries.latest_alerts(conn, tenant, 50)
    audit = [
        {
            "id": r.id,
            "event_id": r.event_id,
            "score": r.score,
            "reason": r.reason,
            "agent": r.agent,
            "summary": (r.tool or r.type) + (": " + r.content[:120] if r.content else ""),
        }
        for r in queries.open_audit_with_events(conn, tenant, 50)
    ]
    agents = queries.busiest_agents(conn, tenant, 6)
    alarms = queries.drift_alarm_counts(conn, tenant)
    charts = [
        _chart(a, queries.recent_scores(conn, tenant, a, 300), int(alarms.get(a, 0)))
        for a in agents
    ]
    return _env.get_template("dashboard.html").render(
        n_events=n_events, alerts=alerts, audit=audit, monitors=monitors, charts=charts
    )


@router.get("/", response_class=HTMLResponse)
def dashboard(
    request: Request, engine: EngineDep, service: ServiceDep, keys: KeysDep
) -> HTMLResponse:
    key = request.cookies.get(COOKIE)
    tid = keys.tenant(key) if key else None
    if tid is None:
        return HTMLResponse(render_login(None))
    with engine.connect() as conn:
        html = render_dashboard(conn, tid, monitor_list(service, conn, tid))
    return HTMLResponse(html)


@router.post("/login")
async def login(request: Request, keys: KeysDep) -> Response:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    key = (form.get("key") or [""])[0].strip()
    if not key or keys.tenant(key) is None:
        return HTMLResponse(render_login("That key is not valid."), status_code=401)
    resp = RedirectResponse("/", status_code=303)
    resp.set_cookie(COOKIE, key, httponly=True, samesite="strict")
    return resp


__all__ = ["COOKIE", "render_dashboard", "render_login", "router"]
