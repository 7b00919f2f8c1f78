"""Value types that flow through the runtime: an :class:`Event` in, a :class:`Verdict` out."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

EventType = Literal["message", "tool_call", "tool_result"]
Action = Literal["allow", "flag", "defer", "block"]
ACTIONS: tuple[Action, ...] = ("allow", "flag", "defer", "block")

MAX_CONTENT_CHARS = 64_000
MAX_ARGUMENTS_BYTES = 64_000


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

    @field_validator("arguments")
    @classmethod
    def _arguments_size(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None and len(json.dumps(v, default=str)) > MAX_ARGUMENTS_BYTES:
            raise ValueError(f"arguments larger than {MAX_ARGUMENTS_BYTES} bytes once serialised")
        return v

    @model_validator(mode="after")
    def _tool_needed(self) -> EventIn:
        if self.type == "tool_call" and not self.tool:
            raise ValueError("a tool_call event needs a 'tool' name")
        return self


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

    @classmethod
    def from_in(cls, e: EventIn, source: str = "api") -> Event:
        return cls(
            agent=e.agent,
            type=e.type,
            content=e.content,
            tool=e.tool,
            arguments=e.arguments,
            session=e.session,
            model=e.model,
            source=source,
        )

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


@dataclass
class Verdict:
    """The aggregated decision for one event."""

    score: float
    action: Action
    results: list[MonitorResult] = field(default_factory=list)
    audit: bool = False

    def as_json(self) -> list[dict[str, Any]]:
        return [
            {"monitor": r.monitor, "score": round(r.score, 4), "reasons": list(r.reasons)}
            for r in self.results
        ]


__all__ = [
    "ACTIONS",
    "Action",
    "Event",
    "EventIn",
    "EventType",
    "MonitorResult",
    "Verdict",
]
