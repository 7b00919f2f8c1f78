"""Confidence intervals for rates and for differences of rates.

* :func:`wilson` - the Wilson score interval for one proportion (good at small n and at 0 or 1).
* :func:`newcombe` - Newcombe's hybrid score interval for a difference of two independent
  proportions (built from the two Wilson intervals; method 10 of Newcombe 1998).
* :func:`newcombe_paired` - Newcombe's score interval for a difference measured on the same
  items (treatment and control ask the same questions).
* :func:`bootstrap_diff` - a percentile bootstrap interval for a difference of means, for when
  the per-sample values are not 0/1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z95 = 1.959963984540054


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes in ``n`` trials; (0, 1) when n == 0."""
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


def bootstrap_diff(
    x1: Sequence[float], x0: Sequence[float], n_boot: int = 2000, seed: int = 0
) -> tuple[float, float, float]:
    """Difference of means ``mean(x1) - mean(x0)`` with a percentile bootstrap 95% interval."""
    a, b = np.asarray(x1, dtype=float), np.asarray(x0, dtype=float)
    if a.size == 0 or b.size == 0:
        return (float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    da = a[rng.integers(0, a.size, size=(n_boot, a.size))].mean(axis=1)
    db = b[rng.integers(0, b.size, size=(n_boot, b.size))].mean(axis=1)
    diffs = da - db
    lo, hi = np.percentile(diffs, [2.5, 97.5])
    return (float(a.mean() - b.mean()), float(lo), float(hi))


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


def paired_bootstrap(
    diffs: Sequence[float], n_boot: int = 4000, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of per-item differences (treatment - control on the same item) with a percentile
    bootstrap 95% interval over items: the right interval when both conditions ask the same
    questions (sandbagging's accuracy gap, alignment faking's compliance gap)."""
    d = np.asarray(diffs, dtype=float)
    if d.size == 0:
        return (float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return (float(d.mean()), float(lo), float(hi))


__all__ = ["Z95", "bootstrap_diff", "newcombe", "newcombe_paired", "paired_bootstrap", "wilson"]
