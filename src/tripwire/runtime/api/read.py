"""Read routes: the tenant's events (with their verdicts as OpenTelemetry evaluation attributes),
alerts, an agent's drift, counts, and the unauthenticated liveness check."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from tripwire.runtime import queries
from tripwire.runtime.alerts import AlertKind
from tripwire.runtime.api.deps import EngineDep, ReadsDep, ServiceDep, Tenant
from tripwire.runtime.api.schemas import (
    AlertPage,
    DetectorSetting,
    DriftView,
    ErrorBody,
    Evaluation,
    EventPage,
    Health,
    LiveDrift,
    Stats,
    StoredAlert,
    StoredEvent,
    evaluation_attributes,
)
from tripwire.runtime.drift import change_points, detector_state, features
from tripwire.runtime.events import EVAL_PREFIX, Action, evaluation_values

router = APIRouter(tags=["read"], responses={401: {"model": ErrorBody}})
health_router = APIRouter(tags=["service"])

AfterId = Annotated[int, Query(ge=0, le=2**31 - 1)]  # ids are INTEGER columns
Limit = Annotated[int, Query(ge=1, le=1000)]
MAX_DRIFT_LAST = 5000


@health_router.get("/healthz")
def healthz(engine: EngineDep) -> Health:
    """Liveness and database reachability (no auth)."""
    try:
        with engine.connect() as conn:
            queries.ping(conn)
        db: Literal["ok", "unreachable"] = "ok"
    except Exception:
        db = "unreachable"
    return Health(status="ok" if db == "ok" else "degraded", db=db)


@router.get("/v1/events")
def get_events(
    tid: Tenant,
    engine: EngineDep,
    agent: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[Action | None, Query()] = None,
    after_id: AfterId = 0,
    limit: Limit = 100,
) -> EventPage:
    """This tenant's events in id order, with their verdicts as ``gen_ai.evaluation.*``."""
    with engine.connect() as conn:
        rows = queries.list_events(
            conn, tid, agent=agent, action=action, after_id=after_id, limit=limit
        )
    events = [
        StoredEvent(
            **{**r, "received_at": r["received_at"].isoformat()},
            evaluation=Evaluation.model_validate(
                evaluation_attributes(r["score"], r["action"], r["verdicts"])
            ),
        )
        for r in rows
    ]
    return EventPage(events=events, next_after_id=rows[-1]["id"] if rows else after_id)


@router.get("/v1/alerts")
def get_alerts(
    tid: Tenant,
    engine: EngineDep,
    kind: Annotated[AlertKind | None, Query()] = None,
    after_id: AfterId = 0,
    limit: Limit = 100,
) -> AlertPage:
    """Alerts: verdicts above allow, demoted monitors (honeypot), behaviour shift (drift)."""
    with engine.connect() as conn:
        rows = queries.list_alerts(conn, tid, kind=kind, after_id=after_id, limit=limit)
    alerts = [StoredAlert(**{**r, "created_at": r["created_at"].isoformat()}) for r in rows]
    return AlertPage(alerts=alerts, next_after_id=rows[-1]["id"] if rows else after_id)


@router.get("/v1/drift")
def get_drift(
    tid: Tenant,
    engine: EngineDep,
    service: ServiceDep,
    reads: ReadsDep,
    agent: Annotated[str, Query(min_length=1, max_length=200)],
    feature: Annotated[
        str,
        Query(
            pattern=r"^(length|score|tool_call|refusal|eval:[^\x00-\x1f]{1,45})$",
            description="length, score, tool_call, refusal, or eval:NAME (the scores of the "
            "evaluations the agent's events came with, e.g. a tripwire guard detector's)",
        ),
    ] = "score",
    last: Annotated[int, Query(ge=20, le=MAX_DRIFT_LAST)] = 500,
) -> DriftView:
    """An agent's last ``last`` feature values (at most 5,000; more is 422), their PELT change
    points and the detector settings. The stream and its change points are cached per tenant
    until the agent's next event."""
    pipe = service.pipelines.get(tid)
    live_agent = pipe.drift.agents.get(agent) if pipe and pipe.drift else None
    live = None
    if live_agent is not None:
        live = LiveDrift(
            calibrated=live_agent.calibrated,
            events_seen=live_agent.n_seen,
            alarms=live_agent.alarms,
            state={
                f"{f}/{k}": detector_state(d) for (f, k), d in list(live_agent.detectors.items())
            },
        )
    with engine.connect() as conn:
        version = queries.latest_agent_event_id(conn, tid, agent)

        def stream() -> tuple[list[int], list[float], list[int]]:
            rows = queries.recent_agent_events(conn, tid, agent, last)
            if feature.startswith(EVAL_PREFIX):  # the events that carry that evaluation
                pairs = [(r.id, evaluation_values(r.verdicts).get(feature)) for r in rows]
                kept = [(i, v) for i, v in pairs if v is not None]
                vals = [v for _i, v in kept]
                return [i for i, _v in kept], vals, change_points(vals)
            vals = [features(r.type, r.content, r.tool, r.score, None)[feature] for r in rows]
            return [r.id for r in rows], vals, change_points(vals)

        ids, vals, cps = reads.get(tid, ("drift", agent, feature, last), version, stream)
        det = queries.drift_state(conn, tid, agent)
    return DriftView(
        agent=agent,
        feature=feature,
        event_ids=ids,
        values=vals,
        change_points=cps,
        live=live,
        detectors=[
            DetectorSetting(
                feature=r.feature,
                detector=r.detector,
                params=r.params,
                alarms=r.alarms,
                last_event_id=r.last_event_id,
            )
            for r in det
        ],
    )


@router.get("/v1/stats")
def stats(tid: Tenant, engine: EngineDep) -> Stats:
    """Counts of events by action and open audit items."""
    with engine.connect() as conn:
        by = queries.events_by_action(conn, tid)
        open_items = queries.open_audit_count(conn, tid)
    return Stats(events_by_action=by, audit_open=open_items)


__all__ = ["MAX_DRIFT_LAST", "health_router", "router"]
