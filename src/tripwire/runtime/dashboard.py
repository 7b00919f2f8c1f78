"""The server-rendered dashboard: alerts, audit queue, monitor health, drift charts as inline SVG
(no scripts, no external assets, so it works offline)."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import Connection, func, select

from tripwire.runtime import store
from tripwire.runtime.drift import change_points

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


def render_dashboard(conn: Connection, tenant: int, monitors: list[dict[str, Any]]) -> str:
    ev, al, au = store.events.c, store.alerts.c, store.audit_queue.c
    n_events = conn.execute(select(func.count()).where(ev.tenant_id == tenant)).scalar_one()
    alerts = conn.execute(
        select(store.alerts).where(al.tenant_id == tenant).order_by(al.id.desc()).limit(50)
    ).all()
    audit_rows = conn.execute(
        select(au.id, au.event_id, au.score, au.reason, ev.agent, ev.type, ev.tool, ev.content)
        .join(store.events, ev.id == au.event_id)
        .where(au.tenant_id == tenant, au.status == "open")
        .order_by(au.score.desc(), au.id)
        .limit(50)
    ).all()
    audit = [
        {
            "id": r.id,
            "event_id": r.event_id,
            "score": r.score,
            "reason": r.reason,
            "agent": r.agent,
            "summary": (r.tool or r.type) + (": " + r.content[:120] if r.content else ""),
        }
        for r in audit_rows
    ]
    agents = conn.execute(
        select(ev.agent, func.count().label("n"))
        .where(ev.tenant_id == tenant)
        .group_by(ev.agent)
        .order_by(func.count().desc())
        .limit(6)
    ).all()
    alarms: dict[str, int] = dict(
        conn.execute(
            select(al.agent, func.count())
            .where(al.tenant_id == tenant, al.kind == "drift")
            .group_by(al.agent)
        ).all()
    )
    charts = []
    for a in agents:
        vals = (
            conn.execute(
                select(ev.score)
                .where(ev.tenant_id == tenant, ev.agent == a.agent)
                .order_by(ev.id.desc())
                .limit(300)
            )
            .scalars()
            .all()[::-1]
        )
        charts.append(_chart(a.agent, [float(v) for v in vals], int(alarms.get(a.agent, 0))))
    return _env.get_template("dashboard.html").render(
        n_events=n_events, alerts=alerts, audit=audit, monitors=monitors, charts=charts
    )


__all__ = ["render_dashboard", "render_login"]
