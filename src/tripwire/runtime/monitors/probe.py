"""The white-box probe monitor: when the agent's model runs locally, read its activations on each
step and score them with a fitted detector from :mod:`tripwire.whitebox` (defection, deception,
a concept direction). It shares no failure mode with text monitors: a step can read as benign
and still light up a deception direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tripwire.runtime.events import Event, MonitorResult


@dataclass
class ProbeMonitor:
    """Scores ``sigmoid(decision_function / temperature)`` of ``detector`` on the mean residual
    stream at ``layer`` over the step's text; 0.5 is the detector's own decision boundary."""

    lm: Any  # tripwire.models.LocalModel
    detector: Any  # a fitted tripwire.whitebox.Detector
    layer: int
    name: str = "probe"
    trusted: bool = True
    threshold: float = 0.5
    temperature: float = 1.0

    @classmethod
    def from_files(cls, model: str, detector: str | Path, layer: int, **kw: Any) -> ProbeMonitor:
        from tripwire.models import load_model
        from tripwire.whitebox.detectors import Detector

        return cls(load_model(model), Detector.load(detector), layer, **kw)

    def check(self, event: Event) -> MonitorResult:
        return self.check_isolated(event)

    def check_isolated(self, event: Event) -> MonitorResult:
        from tripwire.whitebox.capture import capture

        text = event.text()
        if not text.strip():
            return MonitorResult(self.name, 0.0)
        acts = capture(self.lm, [text[:4000]], layers=[self.layer], positions="mean")
        d = float(self.detector.decision_function(acts[self.layer])[0])
        score = 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, d / self.temperature))))
        return MonitorResult(self.name, score, (f"probe:{d:+.2f}",) if score >= 0.5 else ())


__all__ = ["ProbeMonitor"]
