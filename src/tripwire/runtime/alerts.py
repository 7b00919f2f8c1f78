"""The :class:`Alert` value: one row of the ``alerts`` table, built in one place for each kind.

Four things raise alerts: a verdict above ``allow``, a monitor demoted by its honeypots, a drift
detector's alarm, and an LLM monitor's endpoint whose canary answers shifted. Each has a
constructor here, so the message wording and the severity live next to each other, and
:func:`tripwire.runtime.queries.insert_alerts` is the only code that writes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from tripwire.runtime.drift import Alarm
    from tripwire.runtime.events import Verdict
    from tripwire.runtime.honeypots import MonitorHealth
    from tripwire.runtime.integrity import IntegrityResult

AlertKind = Literal["verdict", "honeypot", "drift", "integrity"]
Severity = Literal["low", "medium", "high"]
SEVERITY: dict[str, Severity] = {"flag": "low", "defer": "medium", "block": "high"}


@dataclass(frozen=True)
class Alert:
    """An alert for one tenant; ``event_id`` and ``agent`` are None when no event caused it."""

    tenant_id: int
    kind: AlertKind
    monitor: str
    severity: Severity
    message: str
    created_at: datetime
    event_id: int | None = None
    agent: str | None = None
    details: dict[str, Any] | None = None

    @classmethod
    def for_verdict(
        cls, tenant_id: int, event_id: int, agent: str, verdict: Verdict, now: datetime
    ) -> Alert:
        """A flag / defer / block verdict, attributed to the monitor that scored highest."""
        top = max(verdict.results, key=lambda r: r.score)
        return cls(
            tenant_id=tenant_id,
            kind="verdict",
            monitor=top.monitor,
            severity=SEVERITY[verdict.action],
            message=f"{verdict.action}: {', '.join(top.reasons) or top.monitor}"
            f" (score {verdict.score:.2f})",
            created_at=now,
            event_id=event_id,
            agent=agent,
            details={"verdicts": verdict.as_json()},
        )

    @classmethod
    def for_demotion(cls, tenant_id: int, health: MonitorHealth, now: datetime) -> Alert:
        """A monitor whose honeypot CUSUM crossed its level: it no longer counts."""
        h = health
        return cls(
            tenant_id=tenant_id,
            kind="honeypot",
            monitor=h.name,
            severity="high",
            message=f"monitor {h.name} demoted to untrusted: caught {h.caught}"
            f" of {h.sent} honeypots (CUSUM {h.cusum.stat:.2f} >= {h.cusum.h})",
            created_at=now,
            details={"sent": h.sent, "caught": h.caught},
        )

    @classmethod
    def for_drift(cls, tenant_id: int, alarm: Alarm, now: datetime) -> Alert:
        """A drift detector's alarm on one feature of one agent."""
        a = alarm
        return cls(
            tenant_id=tenant_id,
            kind="drift",
            monitor=f"{a.detector}:{a.feature}",
            severity="medium",
            message=f"behaviour shift in {a.feature} of agent {a.agent} ({a.detector})",
            created_at=now,
            event_id=a.event_id,
            agent=a.agent,
            details={"value": a.value},
        )

    @classmethod
    def for_integrity(
        cls, tenant_id: int, monitor: str, result: IntegrityResult, now: datetime
    ) -> Alert:
        """An LLM monitor's endpoint answering its canaries from a different distribution."""
        return cls(
            tenant_id=tenant_id,
            kind="integrity",
            monitor=monitor,
            severity="high",
            message=f"monitor {monitor}: canary answers shifted (p={result.p_value:.4f}); "
            "the model behind its endpoint may have been swapped or tampered with",
            created_at=now,
            details={"statistic": result.statistic, "p_value": result.p_value},
        )

    def row(self) -> dict[str, Any]:
        """The ``alerts`` row (every column but ``id``)."""
        return {
            "tenant_id": self.tenant_id,
            "event_id": self.event_id,
            "kind": self.kind,
            "monitor": self.monitor,
            "agent": self.agent,
            "severity": self.severity,
            "message": self.message,
            "details": self.details,
            "created_at": self.created_at,
        }


__all__ = ["SEVERITY", "Alert", "AlertKind", "Severity"]
