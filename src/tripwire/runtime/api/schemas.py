"""The API's request and response bodies, as pydantic models, so the OpenAPI schema documents them.

Field order is the order the JSON answers have always had (the order of the table columns, less
``tenant_id``). Columns stored as JSON (``arguments``, ``details``, drift ``params``) are passed
through as they were stored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from tripwire.runtime.alerts import AlertKind, Severity
from tripwire.runtime.events import Action, EventIn, EventType

MAX_BATCH = 1000


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: one line saying what is wrong."""

    error: str


# -- ingest -----------------------------------------------------------------------------------
class EventBatch(BaseModel):
    """Several events in one request (at most 1000); committed together."""

    model_config = ConfigDict(extra="forbid")
    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


class MonitorScore(BaseModel):
    """One monitor's score of one event, and the rules or reasons behind it."""

    monitor: str
    score: float
    reasons: list[str]
    value: float | None = Field(
        default=None,
        description="an evaluation's own score (monitor eval:NAME: a verdict the event came "
        "with, e.g. a tripwire guard detector's); its label is the action, score stands for it",
    )


class Accepted(BaseModel):
    id: int
    score: float
    action: Action
    audit: bool
    monitors: list[MonitorScore]


class EventsAccepted(BaseModel):
    accepted: int
    events: list[Accepted]


EVENTS: TypeAdapter[EventIn | EventBatch] = TypeAdapter(EventIn | EventBatch)
EVENTS_SCHEMA = EVENTS.json_schema(ref_template="#/components/schemas/{model}")
EVENTS_DEFS = EVENTS_SCHEMA.pop("$defs", {})


# -- reads ------------------------------------------------------------------------------------
class Health(BaseModel):
    status: Literal["ok", "degraded"]
    db: Literal["ok", "unreachable"]


class Evaluation(BaseModel):
    """A verdict as OpenTelemetry GenAI evaluation attributes, to attach to the source span."""

    model_config = ConfigDict(populate_by_name=True)
    name: str = Field(alias="gen_ai.evaluation.name")
    score_value: float = Field(alias="gen_ai.evaluation.score.value")
    score_label: Action = Field(alias="gen_ai.evaluation.score.label")
    explanation: str = Field(alias="gen_ai.evaluation.explanation")


def evaluation_attributes(
    score: float, action: str, verdicts: list[dict[str, Any]]
) -> dict[str, Any]:
    """A verdict as OpenTelemetry GenAI evaluation attributes, to attach to the source span."""
    reasons = sorted({r for v in verdicts for r in v.get("reasons", [])})
    return {
        "gen_ai.evaluation.name": "tripwire",
        "gen_ai.evaluation.score.value": score,
        "gen_ai.evaluation.score.label": action,
        "gen_ai.evaluation.explanation": ", ".join(reasons) or "no rule matched",
    }


class StoredEvent(BaseModel):
    id: int
    agent: str
    session: str | None
    type: EventType
    content: str | None
    tool: str | None
    arguments: dict[str, Any] | None
    model: str | None
    source: str
    score: float
    action: Action
    verdicts: list[MonitorScore]
    received_at: str = Field(description="ISO 8601")
    idempotency_key: str | None = Field(
        default=None, description="the key it was stored under (given or derived), if any"
    )
    evaluation: Evaluation


class EventPage(BaseModel):
    events: list[StoredEvent]
    next_after_id: int = Field(description="pass as after_id for the next page")


class StoredAlert(BaseModel):
    id: int
    event_id: int | None
    kind: AlertKind
    monitor: str
    agent: str | None
    severity: Severity
    message: str
    details: dict[str, Any] | None
    created_at: str = Field(description="ISO 8601")


class AlertPage(BaseModel):
    alerts: list[StoredAlert]
    next_after_id: int = Field(description="pass as after_id for the next page")


class MonitorStatus(BaseModel):
    """A monitor's honeypot record: is it trusted, has it been demoted, how often it caught."""

    name: str
    trusted: bool
    demoted: bool
    honeypots_sent: int
    honeypots_caught: int
    catch_rate: float | None
    cusum: float
    cusum_h: float


class MonitorList(BaseModel):
    monitors: list[MonitorStatus]


class LiveDrift(BaseModel):
    """The agent's detectors in the running service."""

    calibrated: bool
    events_seen: int
    alarms: int
    state: dict[str, dict[str, float]] = Field(description="per FEATURE/DETECTOR statistics")


class DetectorSetting(BaseModel):
    """One persisted detector: its calibrated parameters and alarm count."""

    feature: str
    detector: str
    params: dict[str, Any]
    alarms: int
    last_event_id: int


class DriftView(BaseModel):
    agent: str
    feature: str
    event_ids: list[int]
    values: list[float]
    change_points: list[int] = Field(description="indices into values (ruptures PELT)")
    live: LiveDrift | None
    detectors: list[DetectorSetting]


class Stats(BaseModel):
    events_by_action: dict[str, int]
    audit_open: int


# -- audit ------------------------------------------------------------------------------------
class AuditItem(BaseModel):
    id: int
    event_id: int
    score: float
    reason: str
    status: Literal["open", "confirmed", "dismissed"]
    created_at: str = Field(description="ISO 8601")


class AuditQueue(BaseModel):
    items: list[AuditItem]


class AuditDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["confirmed", "dismissed"]
    note: str | None = Field(default=None, max_length=2000)


class AuditDecided(BaseModel):
    id: int
    status: Literal["confirmed", "dismissed"]


# -- integrity --------------------------------------------------------------------------------
class FingerprintReference(BaseModel):
    """The first fingerprint of a monitor: it becomes the reference."""

    monitor: str
    reference: Literal[True]
    canaries: int


class FingerprintComparison(BaseModel):
    """A later fingerprint, tested against the reference (MMD permutation test)."""

    monitor: str
    reference: Literal[False]
    statistic: float
    p_value: float
    shifted: bool


__all__ = [
    "EVENTS",
    "EVENTS_DEFS",
    "EVENTS_SCHEMA",
    "MAX_BATCH",
    "Accepted",
    "AlertPage",
    "AuditDecided",
    "AuditDecision",
    "AuditItem",
    "AuditQueue",
    "DetectorSetting",
    "DriftView",
    "ErrorBody",
    "Evaluation",
    "EventBatch",
    "EventPage",
    "EventsAccepted",
    "FingerprintComparison",
    "FingerprintReference",
    "Health",
    "LiveDrift",
    "MonitorList",
    "MonitorScore",
    "MonitorStatus",
    "Stats",
    "StoredAlert",
    "StoredEvent",
    "evaluation_attributes",
]
