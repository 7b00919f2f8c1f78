"""The pieces of the writer's group commit (:mod:`tripwire.runtime.service`): a request's job,
its share of a group, the look-up of events already stored under the group's idempotency keys,
and the insert of a group's new events with everything that goes with them."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeAlias

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from tripwire.runtime import credentials, queries
from tripwire.runtime.alerts import Alert
from tripwire.runtime.errors import KeyRefused
from tripwire.runtime.events import Event
from tripwire.runtime.pipeline import Pipeline, Processed

Stored: TypeAlias = tuple[dict[str, Any], set[int]]
"""A tenant's events stored under some keys (by key), and which of them were audited (ids)."""


@dataclass
class Job:
    tenant: int
    events: list[Event]
    future: Future[list[dict[str, Any]]]
    key_id: int | None = None  # the API key it came with, confirmed live inside the commit

    def idem_keys(self) -> set[tuple[int, str]]:
        return {(self.tenant, e.key) for e in self.events if e.key is not None}


@dataclass
class Part:
    """One request's share of a group commit: answers for its already-stored events, and its
    new events, scored; ``ids`` are theirs once inserted."""

    job: Job
    answers: list[dict[str, Any] | None]
    new: list[tuple[int, Pipeline, Event, Processed]] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)

    def fail(self, exc: BaseException) -> None:
        self.ids = []
        self.job.future.set_exception(exc)

    def answer(self) -> list[dict[str, Any]]:
        for eid, (i, _p, _e, pr) in zip(self.ids, self.new, strict=True):
            v = pr.verdict
            self.answers[i] = {
                "id": eid,
                "score": round(v.score, 4),
                "action": v.action,
                "audit": v.audit,
                "monitors": v.as_json(),
            }
        return [a for a in self.answers if a is not None]


def replay(row: Any, audited: set[int]) -> dict[str, Any]:
    """The answer of an event stored earlier, as it was given then."""
    return {
        "id": row.id,
        "score": round(row.score, 4),
        "action": row.action,
        "audit": row.id in audited,
        "monitors": row.verdicts,
    }


def unreachable(exc: BaseException) -> bool:
    """The database itself is gone (not one request's values): no use trying the others."""
    return isinstance(exc, PoolTimeout) or (
        isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)
    )


def insert(conn: Connection, parts: list[Part], now: datetime) -> None:
    """Insert the new events of ``parts`` with their alerts, audit items and monitor health."""
    rows = [
        queries.event_row(pt.job.tenant, e, pr.verdict, now)
        for pt in parts
        for _i, _p, e, pr in pt.new
    ]
    ids = queries.insert_events(conn, rows)
    alerts: list[Alert] = []
    audit_rows: list[dict[str, Any]] = []
    touched: dict[int, Pipeline] = {}
    k = 0
    for pt in parts:
        t = pt.job.tenant
        pt.ids = ids[k : k + len(pt.new)]
        k += len(pt.new)
        for eid, (_i, p, e, pr) in zip(pt.ids, pt.new, strict=True):
            v = pr.verdict
            if v.action != "allow":
                alerts.append(Alert.for_verdict(t, eid, e.agent, v, now))
            if pr.audit_reason is not None:
                audit_rows.append(queries.audit_row(t, eid, v.score, pr.audit_reason, now))
            alerts.extend(Alert.for_demotion(t, h, now) for h in pr.demoted)
            if pr.honeypot:
                touched[t] = p
    queries.insert_alerts(conn, alerts)
    queries.insert_audit_items(conn, audit_rows)
    for tenant, p in touched.items():
        save_health(conn, tenant, p, now)


def stored(conn: Connection, jobs: list[Job]) -> dict[int, Stored]:
    """Per tenant: its events already stored under this group's keys, and the audited ones."""
    wanted: dict[int, list[str]] = {}
    for j in jobs:
        wanted.setdefault(j.tenant, []).extend(k for _t, k in j.idem_keys())
    return {t: queries.events_by_key(conn, t, ks) for t, ks in wanted.items() if ks}


def save_health(conn: Connection, tenant: int, p: Pipeline, now: datetime) -> None:
    """Persist the honeypot record of each of ``p``'s monitors."""
    for name, h in p.guard.health.items():
        vals = {
            "trusted": h.trusted,
            "demoted": h.demoted,
            "honeypots_sent": h.sent,
            "honeypots_caught": h.caught,
            "cusum": h.cusum.stat,
            "demoted_at": now if h.demoted else None,
            "updated_at": now,
        }
        queries.save_monitor_health(conn, tenant, name, vals)


def live(conn: Connection, jobs: list[Job]) -> list[Job]:
    """The jobs whose API key (when they carry one) is still live; the others fail with
    :class:`KeyRefused` and store nothing. One read for the whole group."""
    ids = {j.key_id for j in jobs if j.key_id is not None}
    if not ids:
        return jobs
    alive = credentials.live_key_ids(conn, ids)
    keep = []
    for j in jobs:
        if j.key_id is None or j.key_id in alive:
            keep.append(j)
        else:
            j.future.set_exception(KeyRefused("invalid or revoked API key"))
    return keep


__all__ = [
    "Job",
    "Part",
    "Stored",
    "insert",
    "live",
    "replay",
    "save_health",
    "stored",
    "unreachable",
]
