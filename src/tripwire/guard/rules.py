"""Sequential rules on per-token scores, and the conformal thresholds calibration sets.

A decode rule standardises each generated token's score with the honest per-token mean and
spread (``z = (s - mean) / std``) and runs one statistic per answer:

* ``cusum`` (default): ``S_t = max(0, S_{t-1} + z_t - k)`` - the optimal detector of a shift
  in the mean (Lorden 1971, Moustakides 1986); ``k`` is half the shift it is tuned to.
* ``ema``: ``E_t = (1 - alpha) E_{t-1} + alpha z_t``, starting at 0.

The answer is stopped at the first token where the statistic exceeds ``level``. Calibration sets
``level`` from honest answers so that at most ``budget`` of them would have been stopped
anywhere (a per-answer false-stop rate, for answers as long as the calibration's).

:func:`conformal_threshold` is the finite-sample quantile used for every threshold: with ``n``
honest scores, the ``ceil((n + 1) (1 - budget))``-th smallest, so a new honest score exceeds it
with probability at most ``budget`` when honest traffic is exchangeable with the calibration set.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tripwire.errors import UsageError

RULES = ("cusum", "ema")


@dataclass(frozen=True)
class DecodeRule:
    """A calibrated sequential rule (see the module docstring)."""

    rule: str
    mean: float
    std: float
    level: float
    k: float = 0.5
    alpha: float = 0.3
    budget: float = 0.01
    n: int = 0
    false_stop_rate: float | None = None

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise UsageError(f"unknown decode rule {self.rule!r}: use {' or '.join(RULES)}")

    def z(self, scores: np.ndarray) -> np.ndarray:
        return (np.asarray(scores, dtype=np.float64) - self.mean) / (self.std or 1.0)

    def update(self, stat: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """The statistic after one more token per row (``stat`` and ``scores``: (rows,))."""
        z = self.z(scores)
        if self.rule == "cusum":
            return np.maximum(0.0, stat + z - self.k)
        return (1.0 - self.alpha) * stat + self.alpha * z

    def path(self, scores: Sequence[float]) -> np.ndarray:
        """The statistic along one answer's tokens."""
        stat = np.zeros(1)
        out = []
        for s in scores:
            stat = self.update(stat, np.asarray([s]))
            out.append(float(stat[0]))
        return np.asarray(out)


def min_samples(budget: float) -> int:
    """The fewest honest samples for which :func:`conformal_threshold` exists at ``budget``."""
    return math.ceil(1.0 / budget) - 1


def conformal_threshold(scores: Sequence[float], budget: float, what: str = "prompts") -> float:
    """The ``ceil((n + 1)(1 - budget))``-th smallest of ``scores`` (see the module docstring)."""
    if not 0.0 < budget < 1.0:
        raise UsageError(f"a budget must be in (0, 1), got {budget}")
    x = np.sort(np.asarray(scores, dtype=np.float64))
    rank = math.ceil((len(x) + 1) * (1.0 - budget))
    if rank > len(x):
        raise UsageError(
            f"a {budget:.2%} budget needs at least {min_samples(budget)} honest {what}, got "
            f"{len(x)}: add honest traffic or raise --budget"
        )
    return float(x[rank - 1])


def fit_rule(
    answers: Sequence[Sequence[float]], budget: float, rule: str = "cusum", k: float = 0.5
) -> DecodeRule:
    """A :class:`DecodeRule` whose level lets at most ``budget`` of honest ``answers`` be cut."""
    tokens = np.concatenate([np.asarray(a, dtype=np.float64) for a in answers if len(a)])
    if tokens.size == 0:
        raise UsageError("the honest answers produced no tokens: raise --max-tokens")
    base = DecodeRule(rule, float(tokens.mean()), float(tokens.std()) or 1.0, np.inf, k=k)
    peaks = [float(base.path(a).max()) if len(a) else 0.0 for a in answers]
    level = conformal_threshold(peaks, budget, "answers")
    rate = float(np.mean(np.asarray(peaks) > level))
    return DecodeRule(
        rule,
        base.mean,
        base.std,
        level,
        k=k,
        budget=budget,
        n=len(answers),
        false_stop_rate=rate,
    )


__all__ = ["RULES", "DecodeRule", "conformal_threshold", "fit_rule", "min_samples"]
