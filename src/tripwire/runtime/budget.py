"""The human audit budget: a fraction of events a person reviews, spent where suspicion is highest.

An event enters the audit queue when it is deferred (a human or trusted path must decide), or
when its score is in the top ``fraction`` of recent traffic and the budget has room. Spending is
accounted against the number of events seen, so a burst of suspicious events cannot exhaust the
budget for the rest of the day, and a quiet period builds only a bounded reserve.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
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
    # After :meth:`restore` the window of recent scores is unknown until a cut-off is due; then
    # ``history(n)`` gives the last ``n`` stored scores (oldest first), and the scores seen since
    # the restore follow them.
    history: Callable[[int], list[float]] | None = None
    _known: bool = True
    _since: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction < 1.0:
            raise UsageError("audit budget fraction must be in (0, 1)")
        self._recent = deque(maxlen=self.window)

    def restore(self, seen: int, spent: int, cut: float) -> None:
        """Take counters persisted by whoever considered the events before (another replica,
        or this process before a restart); the window is read back when it is next needed."""
        self.seen, self.spent, self._cut = seen, spent, cut
        self._recent.clear()
        self._since = []
        self._known = seen == 0

    def committed(self) -> None:
        """The events considered so far are stored: ``history`` returns their scores from now on
        (called by the writer after each commit)."""
        if not self._known:
            self._since = []

    def _window(self) -> deque[float]:
        if not self._known:
            if self.history is None:
                raise UsageError("audit budget restored without a history of stored scores")
            want = self.window - len(self._since)
            past = self.history(want) if want > 0 else []
            self._recent = deque([*past, *self._since], maxlen=self.window)
            self._since = []
            self._known = True
        return self._recent

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
        if self._known:
            self._recent.append(verdict.score)
        else:
            self._since.append(verdict.score)
            if len(self._since) >= self.window:
                self._recent = deque(self._since, maxlen=self.window)
                self._since, self._known = [], True
        if self.seen % 100 == 0 or self.seen == 20:
            window = self._window()
            self._cut = float(np.percentile(np.fromiter(window, float), 100 * (1 - self.fraction)))
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
