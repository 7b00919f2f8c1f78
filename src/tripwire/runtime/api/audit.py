"""The audit queue: the events a human should look at, most suspicious first, and their decision."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query

from tripwire.runtime import queries
from tripwire.runtime.api.deps import EngineDep, Tenant
from tripwire.runtime.api.schemas import (
    AuditDecided,
    AuditDecision,
    AuditItem,
    AuditQueue,
    ErrorBody,
)

router = APIRouter(tags=["audit"], responses={401: {"model": ErrorBody}})


@router.get("/v1/audit")
def get_audit(
    tid: Tenant,
    engine: EngineDep,
    status: Annotated[Literal["open", "confirmed", "dismissed"], Query()] = "open",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditQueue:
    """The audit queue, most suspicious first."""
    with engine.connect() as conn:
        rows = queries.list_audit(conn, tid, status, limit)
    return AuditQueue(
        items=[AuditItem(**{**r, "created_at": r["created_at"].isoformat()}) for r in rows]
    )


@router.post("/v1/audit/{item_id}", responses={404: {"model": ErrorBody}})
def decide_audit(
    tid: Tenant,
    engine: EngineDep,
    item_id: Annotated[int, Path(ge=1, le=2**31 - 1)],  # an INTEGER column
    decision: AuditDecision,
) -> AuditDecided:
    """Record a human's decision on one audit item."""
    with engine.begin() as conn:
        found = queries.set_audit_status(conn, tid, item_id, decision.status)
    if not found:
        raise HTTPException(404, f"no audit item {item_id}")
    return AuditDecided(id=item_id, status=decision.status)


__all__ = ["router"]
