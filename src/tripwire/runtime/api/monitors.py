"""Monitor routes: each monitor's honeypot health, and the canary fingerprint of an LLM monitor's
endpoint (the first is the reference; a later one that differs raises an ``integrity`` alert)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query
from sqlalchemy import Connection

from tripwire.runtime import queries
from tripwire.runtime.alerts import Alert
from tripwire.runtime.api.deps import EngineDep, ServiceDep, Tenant
from tripwire.runtime.api.schemas import (
    ErrorBody,
    FingerprintComparison,
    FingerprintReference,
    MonitorList,
    MonitorStatus,
)
from tripwire.runtime.errors import UpstreamError
from tripwire.runtime.integrity import compare, sample_fingerprint
from tripwire.runtime.monitors.llm import LLMMonitor
from tripwire.runtime.service import Service

router = APIRouter(responses={401: {"model": ErrorBody}})


def monitor_list(service: Service, conn: Connection, tenant: int) -> list[MonitorStatus]:
    """The configured monitors, with the tenant's persisted honeypot record where there is one
    (a monitor no longer configured but still on record is listed too)."""
    base = {m["name"]: m for m in service.template().monitor_status()}
    for r in queries.monitor_health(conn, tenant):
        m = base.setdefault(r.monitor, {"name": r.monitor, "cusum_h": service.config.honeypot_h})
        m.update(
            trusted=r.trusted,
            demoted=r.demoted,
            honeypots_sent=r.honeypots_sent,
            honeypots_caught=r.honeypots_caught,
            catch_rate=r.honeypots_caught / r.honeypots_sent if r.honeypots_sent else None,
            cusum=round(r.cusum, 4),
        )
    return [MonitorStatus(**m) for m in base.values()]


@router.get("/v1/monitors", tags=["read"])
def get_monitors(tid: Tenant, engine: EngineDep, service: ServiceDep) -> MonitorList:
    """Each monitor's health: trust, honeypots shown and caught, CUSUM statistic."""
    with engine.connect() as conn:
        return MonitorList(monitors=monitor_list(service, conn, tid))


@router.post(
    "/v1/monitors/{name}/fingerprint",
    tags=["integrity"],
    responses={404: {"model": ErrorBody}, 502: {"model": ErrorBody}},
)
def fingerprint(
    tid: Tenant,
    engine: EngineDep,
    service: ServiceDep,
    name: Annotated[str, Path(min_length=1, max_length=100)],
    per_prompt: Annotated[int, Query(ge=2, le=50)] = 10,
) -> FingerprintReference | FingerprintComparison:
    """Ask an LLM monitor's endpoint the fixed canary prompts. The first fingerprint becomes
    the reference; later ones are compared with it (MMD permutation test) and a shift raises
    an ``integrity`` alert: the model behind the endpoint changed."""
    mon = next((m for m in service.template().monitors if m.name == name), None)
    if not isinstance(mon, LLMMonitor):
        raise HTTPException(404, f"no LLM monitor named {name!r}")
    try:
        answers = sample_fingerprint(mon.client, mon.model, per_prompt)
    except Exception as exc:
        raise UpstreamError(f"monitor endpoint failed ({type(exc).__name__})") from exc
    now = datetime.now(UTC)
    with engine.begin() as conn:
        ref = queries.reference_fingerprint(conn, tid, name)
        if ref is None:
            queries.insert_fingerprint(
                conn, tid, name, reference=True, answers=answers, p_value=None, now=now
            )
            return FingerprintReference(monitor=name, reference=True, canaries=len(answers))
        res = compare(ref, answers)
        queries.insert_fingerprint(
            conn, tid, name, reference=False, answers=answers, p_value=res.p_value, now=now
        )
        if res.shifted:
            queries.insert_alerts(conn, [Alert.for_integrity(tid, name, res, now)])
    return FingerprintComparison(
        monitor=name,
        reference=False,
        statistic=res.statistic,
        p_value=res.p_value,
        shifted=res.shifted,
    )


__all__ = ["monitor_list", "router"]
