"""Value types that flow through the runtime: an :class:`Event` in, a :class:`Verdict` out."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tripwire.runtime.jsonsafe import text_problem, value_problem

EventType = Literal["message", "tool_call", "tool_result"]
Action = Literal["allow", "flag", "defer", "block"]
ACTIONS: tuple[Action, ...] = ("allow", "flag", "defer", "block")

MAX_CONTENT_CHARS = 64_000
MAX_ARGUMENTS_BYTES = 64_000
MAX_KEY_CHARS = 200
# A verdict that came with the event (an OpenTelemetry ``gen_ai.evaluation.result``, e.g. one of
# ``tripwire guard``'s detectors) is the monitor ``eval:NAME``; its score is a drift stream of
# that name, so the name fits the drift tables' feature column (50 characters).
EVAL_PREFIX = "eval:"
MAX_EVAL_NAME = 45
# The score an evaluation's label stands for (the default thresholds': flag 0.5, defer 0.8,
# block 0.95); the label itself is the monitor's action, so no threshold setting weakens it.
LABEL_SCORES: dict[str, float] = {"allow": 0.0, "flag": 0.5, "defer": 0.8, "block": 1.0}
TEXT_FIELDS = ("agent", "type", "content", "tool", "session", "model", "key")


class EventIn(BaseModel):
    """One step of an agent, as posted to ``POST /v1/events``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)

    agent: str = Field(min_length=1, max_length=200, description="Agent (or model) identifier")
    type: EventType = Field(description="message | tool_call | tool_result")
    content: str | None = Field(default=None, max_length=MAX_CONTENT_CHARS)
    tool: str | None = Field(default=None, min_length=1, max_length=200)
    arguments: dict[str, Any] | None = None
    session: str | None = Field(default=None, max_length=200)
    model: str | None = Field(default=None, max_length=200)
    idempotency_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_KEY_CHARS,
        description="The client's unique id of this event: an event whose key is already "
        "stored (a retry) is answered from the store, not stored again",
    )

    @field_validator("agent", "content", "tool", "session", "model", "idempotency_key")
    @classmethod
    def _storable_text(cls, v: str | None) -> str | None:
        if v is not None and (why := text_problem(v)):
            raise ValueError(why)
        return v

    @field_validator("arguments")
    @classmethod
    def _arguments_storable(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is None:
            return v
        if why := value_problem(v):
            raise ValueError(why)
        if len(json.dumps(v, default=str)) > MAX_ARGUMENTS_BYTES:
            raise ValueError(f"arguments larger than {MAX_ARGUMENTS_BYTES} bytes once serialised")
        return v

    @model_validator(mode="after")
    def _tool_needed(self) -> EventIn:
        if self.type == "tool_call" and not self.tool:
            raise ValueError("a tool_call event needs a 'tool' name")
        return self


@dataclass(frozen=True)
class Evaluation:
    """A verdict an event arrived with, from an evaluator outside this service: its name, its
    score on the evaluator's own scale, its label, and why."""

    name: str
    value: float
    label: str | None = None
    explanation: str = ""

    def result(self) -> MonitorResult:
        """The evaluation as monitor ``eval:NAME``: a label that is an action is the monitor's
        action (and scores as :data:`LABEL_SCORES`); the evaluator's own score is ``value``."""
        action = next((a for a in ACTIONS[1:] if a == self.label), None)  # allow: no action
        return MonitorResult(
            f"{EVAL_PREFIX}{self.name[:MAX_EVAL_NAME]}",
            LABEL_SCORES.get(self.label or "", 0.0),
            (self.explanation,) if self.explanation else (),
            action,
            self.value,
        )


@dataclass(frozen=True)
class Event:
    """An event as the monitors see it (also honeypots, which never reach the database)."""

    agent: str
    type: str
    content: str | None = None
    tool: str | None = None
    arguments: dict[str, Any] | None = None
    session: str | None = None
    model: str | None = None
    source: str = "api"
    key: str | None = None  # idempotency key, unique per tenant (None: never deduplicated)
    evaluations: tuple[Evaluation, ...] = ()  # verdicts it came with (OTLP evaluation events)

    @classmethod
    def from_in(cls, e: EventIn, source: str = "api", key: str | None = None) -> Event:
        """The event of a validated request; ``key`` (derived from the request's
        ``Idempotency-Key``) applies when the event brings no ``idempotency_key`` of its own."""
        return cls(
            agent=e.agent,
            type=e.type,
            content=e.content,
            tool=e.tool,
            arguments=e.arguments,
            session=e.session,
            model=e.model,
            source=source,
            key=e.idempotency_key or key,
        )

    def unstorable(self) -> str | None:
        """Why some backend would refuse this event (one line), or None. Every event is checked
        before scoring, whatever route it came by (requests are validated earlier, with the same
        rules, and answer 422 naming the field)."""
        for name in TEXT_FIELDS:
            v = getattr(self, name)
            if isinstance(v, str) and (why := text_problem(v)):
                return f"{name} {why}"
        return None if self.arguments is None else value_problem(self.arguments, "arguments")

    def same_as(self, row: Any) -> bool:
        """Whether stored row ``row`` (same idempotency key) holds this very event."""
        mine = (self.agent, self.type, self.content, self.tool, self.session, self.model)
        theirs = (row.agent, row.type, row.content, row.tool, row.session, row.model)
        return mine == theirs and (self.arguments or None) == (row.arguments or None)

    def fields(self) -> list[str]:
        """The non-empty text fields a monitor reads: tool name, JSON arguments, content."""
        parts = []
        if self.tool:
            parts.append(self.tool)
        if self.arguments:
            parts.append(json.dumps(self.arguments, sort_keys=True, default=str))
        if self.content:
            parts.append(self.content)
        return parts

    def text(self) -> str:
        """Everything a text monitor reads: content, tool name and arguments, one string."""
        return "\n".join(self.fields())


@dataclass(frozen=True)
class MonitorResult:
    """One monitor's view of one event: a suspicion score in [0, 1] and why."""

    monitor: str
    score: float
    reasons: tuple[str, ...] = ()
    action: Action | None = None
    value: float | None = None  # an evaluation's score on its own scale (a drift stream)


@dataclass
class Verdict:
    """The aggregated decision for one event."""

    score: float
    action: Action
    results: list[MonitorResult] = field(default_factory=list)
    audit: bool = False

    def as_json(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for r in self.results:
            row: dict[str, Any] = {
                "monitor": r.monitor,
                "score": round(r.score, 4),
                "reasons": list(r.reasons),
            }
            if r.value is not None:
                row["value"] = r.value
            out.append(row)
        return out


def evaluation_values(verdicts: Any) -> dict[str, float]:
    """The evaluations' own scores in stored (or :meth:`Verdict.as_json`) verdicts, by monitor
    name: the events' ``eval:NAME`` drift streams. Several of one name (one per choice of an
    answer): the highest, the most suspicious."""
    out: dict[str, float] = {}
    for v in verdicts or ():
        name, value = v.get("monitor", ""), v.get("value")
        if name.startswith(EVAL_PREFIX) and isinstance(value, int | float):
            out[name] = max(float(value), out.get(name, float("-inf")))
    return out


__all__ = [
    "ACTIONS",
    "EVAL_PREFIX",
    "LABEL_SCORES",
    "Action",
    "Evaluation",
    "Event",
    "EventIn",
    "EventType",
    "MonitorResult",
    "Verdict",
    "evaluation_values",
]
