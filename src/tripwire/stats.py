"""Every interval and test statistic tripwire reports, written once and used by every room.

* :func:`wilson` - the Wilson score interval for one proportion (good at small n and at 0 or 1);
  :class:`Rate` is ``k`` of ``n`` with that interval.
* :func:`newcombe` - Newcombe's hybrid score interval for a difference of two independent
  proportions (built from the two Wilson intervals; method 10 of Newcombe 1998).
* :func:`newcombe_paired` - Newcombe's score interval for a difference measured on the same
  items (treatment and control ask the same questions).
* :func:`bootstrap_diff` - a percentile bootstrap interval for a difference of two means.
* :func:`paired_bootstrap` - the mean of per-item differences with a percentile bootstrap interval.
* :func:`auroc` and :func:`auroc_ci` - the area under the ROC curve and its stratified bootstrap
  interval.

Intervals are 95% unless ``z`` or ``alpha`` says otherwise. Nothing here imports another room.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tripwire.errors import UsageError

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes in ``n`` trials; (0, 1) when n == 0.

    The bounds are exactly 0 when ``k == 0`` and exactly 1 when ``k == n``.
    """
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return (lo, hi)


@dataclass
class Rate:
    """``k`` of ``n`` items showed something, with its Wilson 95% interval."""

    k: int
    n: int
    rate: float = field(init=False)
    ci: tuple[float, float] = field(init=False)

    def __post_init__(self) -> None:
        self.rate = self.k / self.n if self.n else float("nan")
        self.ci = wilson(self.k, self.n)

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "n": self.n, "rate": self.rate, "ci": list(self.ci)}

    def __str__(self) -> str:
        return f"{self.rate:.0%} [{self.ci[0]:.0%}, {self.ci[1]:.0%}] (n={self.n})"


def newcombe(k1: int, n1: int, k0: int, n0: int, z: float = Z95) -> tuple[float, float, float]:
    """Difference ``k1/n1 - k0/n0`` with Newcombe's hybrid score 95% interval."""
    if n1 == 0 or n0 == 0:
        return (float("nan"), -1.0, 1.0)
    p1, p0 = k1 / n1, k0 / n0
    l1, u1 = wilson(k1, n1, z)
    l0, u0 = wilson(k0, n0, z)
    d = p1 - p0
    lo = d - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2)
    hi = d + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)
    return (d, max(-1.0, lo), min(1.0, hi))


def newcombe_paired(pairs: Sequence[tuple[int, int]], z: float = Z95) -> tuple[float, float, float]:
    """Difference of two proportions measured on the same items, with Newcombe's (1998)
    score interval for paired data (his method 10).

    ``pairs`` holds (treatment, control) outcomes in {0, 1}, one per item. Unlike a percentile
    bootstrap it does not collapse to a zero-width interval when every item agrees.
    """
    n = len(pairs)
    if n == 0:
        return (float("nan"), -1.0, 1.0)
    a = sum(1 for t, c in pairs if t and c)
    b = sum(1 for t, c in pairs if t and not c)
    c_ = sum(1 for t, c in pairs if not t and c)
    d = n - a - b - c_
    p1, p2 = (a + b) / n, (a + c_) / n
    l1, u1 = wilson(a + b, n, z)
    l2, u2 = wilson(a + c_, n, z)
    denom = (a + b) * (c_ + d) * (a + c_) * (b + d)
    num = float(a * d - b * c_)
    if num > 0:
        num = max(num - n / 2, 0.0)
    phi = num / math.sqrt(denom) if denom > 0 else 0.0
    dl = (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2
    du = (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2
    theta = p1 - p2
    return (
        theta,
        max(-1.0, theta - math.sqrt(max(dl, 0.0))),
        min(1.0, theta + math.sqrt(max(du, 0.0))),
    )


def bootstrap_diff(
    x1: Sequence[float], x0: Sequence[float], n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Difference of means ``mean(x1) - mean(x0)`` of two independent samples, with a
    percentile bootstrap 95% interval (each sample resampled on its own)."""
    a, b = np.asarray(x1, dtype=float), np.asarray(x0, dtype=float)
    if a.size == 0 or b.size == 0:
        return (float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    da = a[rng.integers(0, a.size, size=(n_boot, a.size))].mean(axis=1)
    db = b[rng.integers(0, b.size, size=(n_boot, b.size))].mean(axis=1)
    lo, hi = np.percentile(da - db, [2.5, 97.5])
    return (float(a.mean() - b.mean()), float(lo), float(hi))


def paired_bootstrap(
    diffs: Sequence[float] | np.ndarray, n_boot: int = 4000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of per-item differences (treatment - control on the same item) with a percentile
    bootstrap 95% interval over items: the right interval when both conditions ask the same
    questions (sandbagging's accuracy gap, a concept's shift under pressure). Floating inputs
    keep their precision; anything else is read as float64."""
    d = np.asarray(diffs)
    if d.dtype.kind != "f":
        d = d.astype(np.float64)
    if d.size == 0:
        return (float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return (float(d.mean()), float(lo), float(hi))


def auroc(scores: np.ndarray | Sequence[float], labels: np.ndarray | Sequence[int]) -> float:
    """Area under the ROC curve; ``labels`` are 1 for the positive class, ties count half."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels)
    if len(np.unique(y)) != 2:
        raise UsageError("AUROC needs both classes among the labels")
    return float(roc_auc_score(y, scores))


def auroc_ci(
    scores: np.ndarray | Sequence[float],
    labels: np.ndarray | Sequence[int],
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI for AUROC, resampling each class separately (stratified)."""
    s, y = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        raise UsageError("AUROC needs both classes among the labels")
    rng = np.random.default_rng(seed)
    p = pos[rng.integers(0, len(pos), (n_boot, len(pos)))]
    n = neg[rng.integers(0, len(neg), (n_boot, len(neg)))]
    # AUROC = P(pos > neg) + 0.5 P(pos == neg), computed by ranks per replicate.
    ranks = rank_rows(np.concatenate([p, n], axis=1))
    r_pos = ranks[:, : len(pos)].sum(1)
    aucs = (r_pos - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))
    lo, hi = np.quantile(aucs, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def rank_rows(a: np.ndarray, axis: int = 1) -> np.ndarray:
    """Average ranks (1-based) along ``axis``, ties sharing their mean rank."""
    from scipy.stats import rankdata

    return np.asarray(rankdata(a, axis=axis), dtype=np.float64)


__all__ = [
    "Z95",
    "Rate",
    "auroc",
    "auroc_ci",
    "bootstrap_diff",
    "newcombe",
    "newcombe_paired",
    "paired_bootstrap",
    "rank_rows",
    "wilson",
]
