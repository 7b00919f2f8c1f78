"""One tenant's monitoring pipeline, with no database: monitors -> aggregation -> audit budget,
honeypot trials on the side, drift on committed events. The service and ``tripwire watch`` share it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tripwire.errors import UsageError
from tripwire.runtime.aggregate import Calibrator, Method, Thresholds, aggregate
from tripwire.runtime.budget import AuditBudget
from tripwire.runtime.drift import Alarm, DriftWatch
from tripwire.runtime.events import Event, Verdict, evaluation_values
from tripwire.runtime.honeypots import HoneypotGuard, MonitorHealth
from tripwire.runtime.monitors.base import Monitor
from tripwire.runtime.monitors.rules import RulesMonitor, load_policy


@dataclass
class RuntimeConfig:
    """Everything a deployment tunes; defaults are the shipped ones."""

    policy: str | Path | None = None
    method: Method = "max"
    thresholds: Thresholds = field(default_factory=Thresholds)
    audit_fraction: float = 0.02
    honeypot_rate: float = 0.02
    honeypot_p0: float = 0.05
    honeypot_p1: float = 0.5
    honeypot_h: float = 11.0  # bench/honeypots.py: <1% false demotion in 2,000 honeypots
    drift: bool = True
    drift_baseline: int = 300
    drift_arl0: float = 5000.0
    extra_monitors: list[Callable[[], Monitor]] = field(default_factory=list)
    calibrators: dict[str, Calibrator] = field(default_factory=dict)
    upstream: str | None = None
    upstream_key: str | None = None
    seed: int = 0


@dataclass
class Processed:
    verdict: Verdict
    audit_reason: str | None
    demoted: list[MonitorHealth]
    honeypot: bool


@dataclass
class Pipeline:
    """Monitors and their bookkeeping for one tenant."""

    config: RuntimeConfig
    executor: Executor | None = None
    monitors: list[Monitor] = field(default_factory=list)
    budget: AuditBudget = field(init=False)
    guard: HoneypotGuard = field(init=False)
    drift: DriftWatch | None = field(init=False)
    # Each agent's last tool call with arguments (the shape synthesised honeypots copy); an agent
    # not in it is looked up with ``last_tool_call`` (the store) when one is set.
    _recent: dict[str, Event | None] = field(default_factory=dict)
    last_tool_call: Callable[[str], Event | None] | None = None

    def __post_init__(self) -> None:
        c = self.config
        if not self.monitors:
            self.monitors = [RulesMonitor(load_policy(c.policy))]
            self.monitors += [make() for make in c.extra_monitors]
        self.budget = AuditBudget(c.audit_fraction)
        self.guard = HoneypotGuard(
            rate=c.honeypot_rate, p0=c.honeypot_p0, p1=c.honeypot_p1, h=c.honeypot_h, seed=c.seed
        )
        for m in self.monitors:
            self.guard.register(m)
        self.drift = (
            DriftWatch(c.drift_baseline, c.drift_arl0, seed=c.seed, executor=self.executor)
            if c.drift
            else None
        )

    @property
    def anchor(self) -> Monitor:
        """The deterministic rules monitor: honeypots synthesised from traffic must trip it."""
        return self.monitors[0]

    def excluded(self) -> frozenset[str]:
        return frozenset(n for n, h in self.guard.health.items() if h.demoted)

    def process(self, event: Event) -> Processed:
        """Score one real event (before it is stored) and run a honeypot trial when one is due.

        The evaluations the event came with join the monitors' results as ``eval:NAME``
        (:meth:`~tripwire.runtime.events.Evaluation.result`): a ``block`` label blocks."""
        results = [m.check(event) for m in self.monitors]
        results += [e.result() for e in event.evaluations]
        verdict = aggregate(
            results,
            self.config.thresholds,
            self.config.method,
            self.config.calibrators,
            self.excluded(),
        )
        reason = self.budget.consider(verdict)
        demoted: list[MonitorHealth] = []
        hp = False
        if self.guard.due():
            hp = True
            if event.agent not in self._recent and self.last_tool_call is not None:
                self._recent[event.agent] = self.last_tool_call(event.agent)
            recent = self._recent.get(event.agent)
            demoted = self.guard.trial(self.guard.make(recent, self.anchor), self.monitors)
        if event.type == "tool_call" and event.arguments:
            self._recent[event.agent] = event
            if len(self._recent) > 10_000:
                self._recent.pop(next(iter(self._recent)))
        return Processed(verdict, reason, demoted, hp)

    def forget_recent(self) -> None:
        """Drop the cached last tool calls (another writer may have stored newer ones)."""
        self._recent.clear()

    def committed(self, event_id: int, event: Event, verdict: Verdict) -> list[Alarm]:
        """Feed a committed event to the drift detectors."""
        if self.drift is None:
            return []
        return self.drift.update(
            event.agent,
            event_id,
            event.type,
            event.content,
            event.tool,
            verdict.score,
            evaluation_values(verdict.as_json()),
        )

    def monitor_status(self) -> list[dict[str, Any]]:
        out = []
        for m in self.monitors:
            h = self.guard.register(m)
            out.append(
                {
                    "name": m.name,
                    "trusted": h.trusted,
                    "demoted": h.demoted,
                    "honeypots_sent": h.sent,
                    "honeypots_caught": h.caught,
                    "catch_rate": h.catch_rate,
                    "cusum": round(h.cusum.stat, 4),
                    "cusum_h": h.cusum.h,
                }
            )
        return out


def calibrate_on_honest(config: RuntimeConfig, honest: list[Event]) -> RuntimeConfig:
    """A copy of ``config`` calibrated on honest traffic: each monitor gets a :class:`Calibrator`
    (its score's percentile among honest scores), aggregation becomes ``calibrated`` max, and
    flag/defer/block thresholds sit at the 98th/99.5th/99.9th percentiles of honest verdicts.

    Rule actions still apply on top (a forbidden tool is blocked whatever its percentile).
    """
    from dataclasses import replace

    if len(honest) < 100:
        raise UsageError("threshold calibration needs at least 100 honest events")
    probe = Pipeline(replace(config, drift=False, honeypot_rate=0.0))
    per_monitor: dict[str, list[float]] = {}
    for e in honest:
        for r in probe.process(e).verdict.results:
            per_monitor.setdefault(r.monitor, []).append(r.score)
    # A monitor that scored every honest event the same (rules: all 0) has no honest
    # distribution to rank against; it keeps its raw scores and its rule actions.
    calibrators = {m: Calibrator().fit(v) for m, v in per_monitor.items() if len(set(v)) > 1}
    fused = [
        max(
            calibrators[m].transform(v[i]) if m in calibrators else v[i]
            for m, v in per_monitor.items()
        )
        for i in range(len(honest))
    ]
    fit = Thresholds.from_honest(fused)
    floor = Thresholds()
    thresholds = Thresholds(
        max(fit.flag, floor.flag), max(fit.defer, floor.defer), max(fit.block, floor.block)
    )
    return replace(config, method="calibrated", calibrators=calibrators, thresholds=thresholds)


__all__ = ["Pipeline", "Processed", "RuntimeConfig", "calibrate_on_honest"]
