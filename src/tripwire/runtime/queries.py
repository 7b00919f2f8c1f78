"""Every statement the runtime runs against its database, as small functions taking a connection.

Routes, the dashboard, the writer thread, ``tripwire watch`` and key management call these and
hold no SQL of their own; the caller owns the transaction (``engine.begin()`` to write,
``engine.connect()`` to read), so several calls can share one commit. Listings that the API
returns come back as plain dicts without ``tenant_id``; rows the caller only reads come back as
SQLAlchemy rows. Every read is filtered by tenant.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeAlias

from sqlalchemy import Connection, Row, bindparam, func, select, text, update

from tripwire.runtime import store

if TYPE_CHECKING:
    from tripwire.runtime.alerts import Alert
    from tripwire.runtime.drift import Alarm
    from tripwire.runtime.events import Event, Verdict

AnyRow: TypeAlias = Row[*tuple[Any, ...]]
"""A row of any width (a SQLAlchemy ``Row``: attribute access by column name)."""

_ev, _al, _au = store.events.c, store.alerts.c, store.audit_queue.c
_mh, _ds, _fp = store.monitor_health.c, store.drift_state.c, store.monitor_fingerprints.c
_ts = store.tenant_state.c

# The writer's statements on every group commit, built once with bound parameters: building a
# statement per call (and generating its cache key) cost about as much Python as running it on
# SQLite (py-spy under bench/serve.py).
_BY_KEY = select(store.events).where(
    _ev.tenant_id == bindparam("w_tenant"),
    _ev.idempotency_key.in_(bindparam("w_keys", expanding=True)),
)
_AUDITED = select(_au.event_id).where(
    _au.tenant_id == bindparam("w_tenant"), _au.event_id.in_(bindparam("w_ids", expanding=True))
)
_INSERT_EVENTS = store.events.insert().returning(_ev.id, sort_by_parameter_order=True)
_STATE = select(store.tenant_state).where(_ts.tenant_id == bindparam("w_tenant"))
_STATE_LOCKED = _STATE.with_for_update()
_SAVE_STATE = update(store.tenant_state).where(_ts.tenant_id == bindparam("w_tenant"))


def _dicts(conn: Connection, q: Any) -> list[dict[str, Any]]:
    """Rows of ``q`` as dicts, without the ``tenant_id`` column the caller filtered on."""
    out = [dict(r._mapping) for r in conn.execute(q)]
    for r in out:
        r.pop("tenant_id", None)
    return out


def ping(conn: Connection) -> None:
    """A round trip to the database (raises when it is unreachable)."""
    conn.execute(text("SELECT 1"))


# -- tenants (keys and sessions: tripwire.runtime.credentials) ------------------------------
def ensure_tenant(conn: Connection, name: str, now: datetime) -> int:
    """The id of tenant ``name``, created (at ``now``) when new."""
    tid = conn.execute(select(store.tenants.c.id).where(store.tenants.c.name == name)).scalar()
    if tid is None:
        tid = conn.execute(
            store.tenants.insert().values(name=name, created_at=now).returning(store.tenants.c.id)
        ).scalar_one()
    return int(tid)


# -- events -----------------------------------------------------------------------------------
def event_row(tenant_id: int, e: Event, verdict: Verdict, now: datetime) -> dict[str, Any]:
    """The ``events`` row of a scored event."""
    return {
        "tenant_id": tenant_id,
        "agent": e.agent,
        "session": e.session,
        "type": e.type,
        "content": e.content,
        "tool": e.tool,
        "arguments": e.arguments,
        "model": e.model,
        "source": e.source,
        "score": verdict.score,
        "action": verdict.action,
        "verdicts": verdict.as_json(),
        "received_at": now,
        "idempotency_key": e.key,
    }


def events_by_key(
    conn: Connection, tenant_id: int, keys: Sequence[str]
) -> tuple[dict[str, AnyRow], set[int]]:
    """A tenant's stored events with these idempotency keys (by key), and which of them went to
    the audit queue (their ids)."""
    found = conn.execute(_BY_KEY, {"w_tenant": tenant_id, "w_keys": list(keys)})
    rows = {str(r.idempotency_key): r for r in found}
    if not rows:
        return {}, set()
    ids = [r.id for r in rows.values()]
    audited = conn.execute(_AUDITED, {"w_tenant": tenant_id, "w_ids": ids}).scalars()
    return rows, {int(i) for i in audited}


def insert_events(conn: Connection, rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` (see :func:`event_row`); their ids, in the order given."""
    return list(conn.execute(_INSERT_EVENTS, rows).scalars().all())


def list_events(
    conn: Connection,
    tenant_id: int,
    *,
    agent: str | None = None,
    action: str | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """A tenant's events after ``after_id``, in id order."""
    q = select(store.events).where(_ev.tenant_id == tenant_id, _ev.id > after_id)
    if agent is not None:
        q = q.where(_ev.agent == agent)
    if action is not None:
        q = q.where(_ev.action == action)
    return _dicts(conn, q.order_by(_ev.id).limit(limit))


def last_events(conn: Connection, tenant_id: int, limit: int) -> list[AnyRow]:
    """A tenant's last ``limit`` events, oldest first."""
    q = select(store.events).where(_ev.tenant_id == tenant_id).order_by(_ev.id.desc())
    return list(conn.execute(q.limit(limit)).all())[::-1]


def recent_agent_events(conn: Connection, tenant_id: int, agent: str, limit: int) -> list[AnyRow]:
    """The last ``limit`` events of an agent (id, type, content, tool, score, verdicts), oldest
    first."""
    q = (
        select(_ev.id, _ev.type, _ev.content, _ev.tool, _ev.score, _ev.verdicts)
        .where(_ev.tenant_id == tenant_id, _ev.agent == agent)
        .order_by(_ev.id.desc())
        .limit(limit)
    )
    return list(conn.execute(q).all())[::-1]


def latest_agent_event_id(conn: Connection, tenant_id: int, agent: str) -> int:
    """The id of an agent's newest event (0 when none): the version of its cached reads."""
    q = select(func.max(_ev.id)).where(_ev.tenant_id == tenant_id, _ev.agent == agent)
    return int(conn.execute(q).scalar() or 0)


def replay_events(
    conn: Connection,
    tenant_id: int,
    agent: str,
    before_id: int,
    since_id: int | None,
    limit: int,
) -> list[AnyRow]:
    """An agent's events before ``before_id``, oldest first, to rebuild its drift detectors:
    the last ``limit`` from ``since_id`` on, or (``since_id`` None) its first ``limit``."""
    q = select(_ev.id, _ev.type, _ev.content, _ev.tool, _ev.score, _ev.verdicts).where(
        _ev.tenant_id == tenant_id, _ev.agent == agent, _ev.id < before_id
    )
    if since_id is None:
        return list(conn.execute(q.order_by(_ev.id).limit(limit)).all())
    q = q.where(_ev.id >= since_id)
    return list(conn.execute(q.order_by(_ev.id.desc()).limit(limit)).all())[::-1]


def count_events(conn: Connection, tenant_id: int) -> int:
    return int(conn.execute(select(func.count()).where(_ev.tenant_id == tenant_id)).scalar_one())


def events_by_action(conn: Connection, tenant_id: int) -> dict[str, int]:
    q = select(_ev.action, func.count()).where(_ev.tenant_id == tenant_id).group_by(_ev.action)
    return dict(conn.execute(q).all())


def busiest_agents(conn: Connection, tenant_id: int, limit: int) -> list[str]:
    """The ``limit`` agents with the most events, most first."""
    q = (
        select(_ev.agent, func.count().label("n"))
        .where(_ev.tenant_id == tenant_id)
        .group_by(_ev.agent)
        .order_by(func.count().desc())
        .limit(limit)
    )
    return [r.agent for r in conn.execute(q).all()]


def recent_scores(conn: Connection, tenant_id: int, agent: str, limit: int) -> list[float]:
    """The verdict scores of an agent's last ``limit`` events, oldest first."""
    q = (
        select(_ev.score)
        .where(_ev.tenant_id == tenant_id, _ev.agent == agent)
        .order_by(_ev.id.desc())
        .limit(limit)
    )
    return [float(v) for v in conn.execute(q).scalars().all()[::-1]]


# -- alerts -----------------------------------------------------------------------------------
def insert_alerts(conn: Connection, alerts: Sequence[Alert]) -> None:
    """Write alerts, in the order given. The one place an ``alerts`` row is written."""
    if alerts:
        conn.execute(store.alerts.insert(), [a.row() for a in alerts])


def list_alerts(
    conn: Connection,
    tenant_id: int,
    *,
    kind: str | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """A tenant's alerts after ``after_id``, in id order."""
    q = select(store.alerts).where(_al.tenant_id == tenant_id, _al.id > after_id)
    if kind is not None:
        q = q.where(_al.kind == kind)
    return _dicts(conn, q.order_by(_al.id).limit(limit))


def latest_alerts(conn: Connection, tenant_id: int, limit: int) -> list[AnyRow]:
    """The newest ``limit`` alerts, newest first."""
    q = select(store.alerts).where(_al.tenant_id == tenant_id).order_by(_al.id.desc()).limit(limit)
    return list(conn.execute(q).all())


def alert_counts(conn: Connection, tenant_id: int) -> dict[str, int]:
    """Number of alerts by kind."""
    q = select(_al.kind, func.count()).where(_al.tenant_id == tenant_id).group_by(_al.kind)
    return dict(conn.execute(q).all())


def drift_alarm_counts(conn: Connection, tenant_id: int) -> dict[str, int]:
    """Number of drift alerts by agent."""
    q = (
        select(_al.agent, func.count())
        .where(_al.tenant_id == tenant_id, _al.kind == "drift")
        .group_by(_al.agent)
    )
    return dict(conn.execute(q).all())


# -- audit queue ------------------------------------------------------------------------------
def audit_row(
    tenant_id: int, event_id: int, score: float, reason: str, now: datetime
) -> dict[str, Any]:
    """The ``audit_queue`` row of an event sent to a human (open)."""
    return {
        "tenant_id": tenant_id,
        "event_id": event_id,
        "score": score,
        "reason": reason,
        "status": "open",
        "created_at": now,
    }


def insert_audit_items(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        conn.execute(store.audit_queue.insert(), rows)


def list_audit(conn: Connection, tenant_id: int, status: str, limit: int) -> list[dict[str, Any]]:
    """Audit items with ``status``, most suspicious first."""
    q = (
        select(store.audit_queue)
        .where(_au.tenant_id == tenant_id, _au.status == status)
        .order_by(_au.score.desc(), _au.id)
        .limit(limit)
    )
    return _dicts(conn, q)


def set_audit_status(conn: Connection, tenant_id: int, item_id: int, status: str) -> bool:
    """Record a decision; False when the tenant has no such item."""
    res = conn.execute(
        update(store.audit_queue)
        .where(_au.id == item_id, _au.tenant_id == tenant_id)
        .values(status=status)
    )
    return bool(res.rowcount)


def open_audit_count(conn: Connection, tenant_id: int) -> int:
    q = select(func.count()).where(_au.tenant_id == tenant_id, _au.status == "open")
    return int(conn.execute(q).scalar_one())


def open_audit_with_events(conn: Connection, tenant_id: int, limit: int) -> list[AnyRow]:
    """Open audit items joined with their event's agent, type, tool and content."""
    q = (
        select(
            _au.id, _au.event_id, _au.score, _au.reason, _ev.agent, _ev.type, _ev.tool, _ev.content
        )
        .join(store.events, _ev.id == _au.event_id)
        .where(_au.tenant_id == tenant_id, _au.status == "open")
        .order_by(_au.score.desc(), _au.id)
        .limit(limit)
    )
    return list(conn.execute(q).all())


# -- monitor health ---------------------------------------------------------------------------
def monitor_health(conn: Connection, tenant_id: int) -> list[AnyRow]:
    """The persisted honeypot record of each of a tenant's monitors."""
    return list(conn.execute(select(store.monitor_health).where(_mh.tenant_id == tenant_id)))


def save_monitor_health(
    conn: Connection, tenant_id: int, monitor: str, values: dict[str, Any]
) -> None:
    """Update a monitor's health row, inserting it the first time."""
    res = conn.execute(
        update(store.monitor_health)
        .where(_mh.tenant_id == tenant_id, _mh.monitor == monitor)
        .values(**values)
    )
    if res.rowcount == 0:
        conn.execute(
            store.monitor_health.insert().values(tenant_id=tenant_id, monitor=monitor, **values)
        )


# -- tenant state (the writer's) ----------------------------------------------------------------


def ensure_tenant_state(conn: Connection, tenant_id: int, now: datetime) -> None:
    """Create the tenant's state row if it has none (racing writers: the first one wins)."""
    if conn.execute(select(_ts.tenant_id).where(_ts.tenant_id == tenant_id)).first() is not None:
        return
    row = {
        "tenant_id": tenant_id,
        "version": 0,
        "last_event_id": 0,
        "budget_seen": 0,
        "budget_spent": 0,
        "budget_cut": 1.0,
        "honeypot_credit": 0.0,
        "honeypot_trials": 0,
        "drift_cursor": 0,
        "updated_at": now,
    }
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        conn.execute(pg_insert(store.tenant_state).values(**row).on_conflict_do_nothing())
    else:
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        conn.execute(sqlite_insert(store.tenant_state).values(**row).on_conflict_do_nothing())


def lock_tenant_state(conn: Connection, tenant_id: int) -> AnyRow:
    """The tenant's state row, locked until the transaction ends (``FOR UPDATE`` on PostgreSQL;
    SQLite has one writer at a time anyway)."""
    q = _STATE_LOCKED if conn.dialect.name == "postgresql" else _STATE
    return conn.execute(q, {"w_tenant": tenant_id}).one()


def tenant_state(conn: Connection, tenant_id: int) -> AnyRow | None:
    return conn.execute(select(store.tenant_state).where(_ts.tenant_id == tenant_id)).first()


def tenant_states(conn: Connection) -> list[AnyRow]:
    """Every tenant's (id, newest event id, drift cursor): what a drift owner polls."""
    q = select(_ts.tenant_id, _ts.last_event_id, _ts.drift_cursor)
    return list(conn.execute(q).all())


def save_tenant_state(conn: Connection, tenant_id: int, values: dict[str, Any]) -> None:
    conn.execute(_SAVE_STATE, {"w_tenant": tenant_id, **values})


def last_scores(conn: Connection, tenant_id: int, limit: int) -> list[float]:
    """The scores of a tenant's last ``limit`` stored events, oldest first."""
    q = select(_ev.score).where(_ev.tenant_id == tenant_id).order_by(_ev.id.desc()).limit(limit)
    return [float(x) for x in conn.execute(q).scalars()][::-1]


def last_tool_call(conn: Connection, tenant_id: int, agent: str) -> AnyRow | None:
    """An agent's newest stored tool call that has arguments (None when it has none)."""
    q = (
        select(_ev.id, _ev.content, _ev.tool, _ev.arguments, _ev.session, _ev.model)
        .where(_ev.tenant_id == tenant_id, _ev.agent == agent, _ev.type == "tool_call")
        .order_by(_ev.id.desc())
    )
    before: int | None = None
    while True:
        page = q if before is None else q.where(_ev.id < before)
        rows = list(conn.execute(page.limit(50)).all())
        for r in rows:
            if r.arguments:
                return r
        if len(rows) < 50:
            return None
        before = int(rows[-1].id)


def events_after(conn: Connection, tenant_id: int, after_id: int, limit: int) -> list[AnyRow]:
    """A tenant's events with id above ``after_id``, oldest first (what drift is fed)."""
    q = (
        select(_ev.id, _ev.agent, _ev.type, _ev.content, _ev.tool, _ev.score, _ev.verdicts)
        .where(_ev.tenant_id == tenant_id, _ev.id > after_id)
        .order_by(_ev.id)
        .limit(limit)
    )
    return list(conn.execute(q).all())


# -- drift state ------------------------------------------------------------------------------
def drift_state(conn: Connection, tenant_id: int, agent: str) -> list[AnyRow]:
    """The persisted detector settings of an agent (one row per feature and detector)."""
    q = select(store.drift_state).where(_ds.tenant_id == tenant_id, _ds.agent == agent)
    return list(conn.execute(q).all())


def insert_drift_state(conn: Connection, rows: list[dict[str, Any]]) -> None:
    for row in rows:
        conn.execute(store.drift_state.insert(), row)


def count_drift_alarm(conn: Connection, tenant_id: int, alarm: Alarm, now: datetime) -> None:
    """Add one to the alarm count of the detector that raised ``alarm``."""
    conn.execute(
        update(store.drift_state)
        .where(
            _ds.tenant_id == tenant_id,
            _ds.agent == alarm.agent,
            _ds.feature == alarm.feature,
            _ds.detector == alarm.detector,
        )
        .values(alarms=_ds.alarms + 1, updated_at=now)
    )


# -- monitor endpoint fingerprints ------------------------------------------------------------
def reference_fingerprint(conn: Connection, tenant_id: int, monitor: str) -> list[list[str]] | None:
    """The canary answers of a monitor's newest reference fingerprint, or None."""
    q = (
        select(_fp.answers)
        .where(_fp.tenant_id == tenant_id, _fp.monitor == monitor, _fp.reference)
        .order_by(_fp.id.desc())
        .limit(1)
    )
    return conn.execute(q).scalar()


def insert_fingerprint(
    conn: Connection,
    tenant_id: int,
    monitor: str,
    *,
    reference: bool,
    answers: list[list[str]],
    p_value: float | None,
    now: datetime,
) -> None:
    """Store a fingerprint: the reference (no p-value), or one compared with it."""
    conn.execute(
        store.monitor_fingerprints.insert().values(
            tenant_id=tenant_id,
            monitor=monitor,
            reference=reference,
            answers=answers,
            p_value=p_value,
            created_at=now,
        )
    )


__all__ = [
    "alert_counts",
    "audit_row",
    "busiest_agents",
    "count_drift_alarm",
    "count_events",
    "drift_alarm_counts",
    "drift_state",
    "ensure_tenant",
    "ensure_tenant_state",
    "event_row",
    "events_after",
    "events_by_action",
    "events_by_key",
    "insert_alerts",
    "insert_audit_items",
    "insert_drift_state",
    "insert_events",
    "insert_fingerprint",
    "last_events",
    "last_scores",
    "last_tool_call",
    "latest_agent_event_id",
    "latest_alerts",
    "list_alerts",
    "list_audit",
    "list_events",
    "lock_tenant_state",
    "monitor_health",
    "open_audit_count",
    "open_audit_with_events",
    "ping",
    "recent_agent_events",
    "recent_scores",
    "reference_fingerprint",
    "replay_events",
    "save_monitor_health",
    "save_tenant_state",
    "tenant_state",
    "tenant_states",
]
