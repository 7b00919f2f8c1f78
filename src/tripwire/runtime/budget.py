"""The human audit budget: a fraction of events a person reviews, spent where suspicion is highest.

An event enters the audit queue when it is deferred (a human or trusted path must decide), or
when its score is in the top ``fraction`` of recent traffic and the budget has room. Spending is
accounted against the number of events seen, so a burst of suspicious events cannot exhaust the
budget for the rest of the day, and a quiet period builds only a bounded reserve.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from tripwire.errors import UsageError
from tripwire.runtime.events import Verdict


@dataclass
class AuditBudget:
    """Online audit selection at a target ``fraction`` (e.g. 0.02 = 2% of events)."""

    fraction: float = 0.02
    window: int = 2000
    reserve: int = 20
    seen: int = 0
    spent: int = 0
    _recent: deque[float] = field(default_factory=lambda: deque(maxlen=2000))
    _cut: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction < 1.0:
            raise UsageError("audit budget fraction must be in (0, 1)")
        self._recent = deque(maxlen=self.window)

    @property
    def available(self) -> float:
        """Audits that may still be spent now (the reserve caps saved-up budget)."""
        return min(self.fraction * self.seen + 1.0, self.spent + self.reserve) - self.spent

    @property
    def cut(self) -> float:
        """Current score cut-off: the (1 - fraction) percentile of recent scores."""
        return self._cut

    def consider(self, verdict: Verdict) -> str | None:
        """Record one event; return the reason it goes to the audit queue, or None."""
        self.seen += 1
        self._recent.append(verdict.score)
        if self.seen % 100 == 0 or self.seen == 20:
            self._cut = float(
                np.percentile(np.fromiter(self._recent, float), 100 * (1 - self.fraction))
            )
        reason: str | None = None
        if verdict.action in ("defer", "block"):
            reason = verdict.action
        elif verdict.score > 0.0 and verdict.score >= self._cut and self.available >= 1.0:
            reason = "top-score"
        if reason is not None:
            self.spent += 1
            verdict.audit = True
        return reason


__all__ = ["AuditBudget"]
