"""The server-rendered dashboard: alerts, audit queue, monitor health, drift charts as inline SVG
(no scripts, no external assets, so it works offline).

Signing in with an API key opens a read-only session (:mod:`tripwire.runtime.sessions`); the
browser keeps only the session's token, in a cookie whose attributes, and the CSRF and same-origin
checks of the forms, are :mod:`~tripwire.runtime.api.websec`'s. ``POST /logout`` deletes the
session server-side."""

from __future__ import annotations

import secrets
from functools import partial
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from tripwire.runtime import queries
from tripwire.runtime.api import websec
from tripwire.runtime.api.cache import ReadCache
from tripwire.runtime.api.deps import EngineDep, KeysDep, ReadsDep, ServiceDep
from tripwire.runtime.api.monitors import monitor_list
from tripwire.runtime.api.schemas import MonitorStatus
from tripwire.runtime.drift import change_points
from tripwire.runtime.sessions import SESSION_TTL, close_session, open_session, session_tenant

TTL_S = int(SESSION_TTL.total_seconds())
PLAIN_HTTP = "Sign-in needs https here (plain http is allowed only on a loopback address)."
CROSS_SITE = "This form did not come from this dashboard; reload the page and sign in again."

router = APIRouter(include_in_schema=False)

_env = Environment(
    loader=PackageLoader("tripwire.runtime", "templates"), autoescape=select_autoescape(["html"])
)


def render_login(error: str | None, csrf: str, nonce: str) -> str:
    return _env.get_template("login.html").render(error=error, csrf=csrf, nonce=nonce)


def _chart(
    agent: str, values: list[float], change: list[int], alarms: int, w: int = 360, h: int = 90
) -> dict[str, Any]:
    n = len(values)
    lo, hi = 0.0, max(1.0, max(values, default=1.0))
    step = w / max(1, n - 1)
    pts = " ".join(
        f"{i * step:.1f},{h - 4 - (v - lo) / (hi - lo) * (h - 8):.1f}" for i, v in enumerate(values)
    )
    cps = [round(i * step, 1) for i in change]
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


def render_dashboard(
    conn: Connection,
    tenant: int,
    monitors: list[MonitorStatus],
    reads: ReadCache,
    csrf: str,
    nonce: str,
) -> str:
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
    charts = []
    for a in agents:
        # The change points are the costly part; they are kept until the agent's next event
        # (the version is read first: scores newer than it only make the entry recompute).
        version = queries.latest_agent_event_id(conn, tenant, a)
        scores = queries.recent_scores(conn, tenant, a, 300)
        cps = reads.get(tenant, ("chart", a), version, partial(change_points, scores))
        charts.append(_chart(a, scores, cps, int(alarms.get(a, 0))))
    return _env.get_template("dashboard.html").render(
        n_events=n_events,
        alerts=alerts,
        audit=audit,
        monitors=monitors,
        charts=charts,
        csrf=csrf,
        nonce=nonce,
    )


def _form(body: bytes) -> dict[str, list[str]]:
    return parse_qs(body.decode("utf-8", "replace"))


def _login_page(request: Request, error: str | None, status: int = 200) -> Response:
    """The sign-in form, with a CSRF token (its cookie set when the transport allows one)."""
    csrf, nonce = websec.csrf_token(request), secrets.token_urlsafe(16)
    secure = websec.secure_transport(request)
    if secure is None and error is None:
        error = PLAIN_HTTP
    resp = HTMLResponse(render_login(error, csrf, nonce), status_code=status)
    if secure is not None:
        websec.set_cookie(resp, websec.CSRF_COOKIE, csrf, secure, TTL_S)
    return websec.harden(resp, nonce)


@router.get("/", response_class=HTMLResponse)
def dashboard(
    request: Request, engine: EngineDep, service: ServiceDep, reads: ReadsDep
) -> Response:
    token = websec.read_cookie(request, websec.SESSION_COOKIE)
    tid = session_tenant(engine, token) if token else None
    if tid is None:
        return _login_page(request, None)
    csrf, nonce = websec.csrf_token(request), secrets.token_urlsafe(16)
    with engine.connect() as conn:
        html = render_dashboard(conn, tid, monitor_list(service, conn, tid), reads, csrf, nonce)
    resp = HTMLResponse(html)
    secure = websec.secure_transport(request)
    if secure is not None:
        websec.set_cookie(resp, websec.CSRF_COOKIE, csrf, secure, TTL_S)
    return websec.harden(resp, nonce)


@router.post("/login")
async def login(request: Request, engine: EngineDep, keys: KeysDep) -> Response:
    """Exchange an API key for a read-only session cookie (the key itself is never stored)."""
    form = _form(await request.body())
    secure = websec.secure_transport(request)
    if secure is None:
        return _login_page(request, PLAIN_HTTP, 400)
    if not websec.csrf_ok(request, form):
        return _login_page(request, CROSS_SITE, 403)
    key = (form.get("key") or [""])[0].strip()
    found = await run_in_threadpool(keys.key, key) if key else None
    if found is None:
        return _login_page(request, "That key is not valid.", 401)
    token = await run_in_threadpool(open_session, engine, *found)
    resp = RedirectResponse("/", status_code=303)
    websec.set_cookie(resp, websec.SESSION_COOKIE, token, secure, TTL_S)
    websec.set_cookie(resp, websec.CSRF_COOKIE, secrets.token_urlsafe(32), secure, TTL_S)
    return websec.harden(resp)


@router.post("/logout")
async def logout(request: Request, engine: EngineDep) -> Response:
    """End the session: its row is deleted, so the cookie is dead even if it was copied."""
    form = _form(await request.body())
    if not websec.csrf_ok(request, form):
        return _login_page(request, CROSS_SITE, 403)
    token = websec.read_cookie(request, websec.SESSION_COOKIE)
    await run_in_threadpool(close_session, engine, token)
    resp = RedirectResponse("/", status_code=303)
    websec.clear_cookie(resp, websec.SESSION_COOKIE, websec.secure_transport(request) is True)
    return websec.harden(resp)


__all__ = ["render_dashboard", "render_login", "router"]
