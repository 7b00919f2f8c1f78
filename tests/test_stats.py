"""tripwire.stats: every interval and statistic, against reference values and invariants."""

from __future__ import annotations

import numpy as np
import pytest

from tripwire.errors import UsageError
from tripwire.stats import (
    Rate,
    auroc,
    auroc_ci,
    bootstrap_diff,
    newcombe,
    newcombe_paired,
    paired_bootstrap,
    wilson,
)


def test_wilson_matches_reference_values() -> None:
    # Newcombe (1998) table I: 81/263 -> 0.2553 to 0.3662
    lo, hi = wilson(81, 263)
    assert lo == pytest.approx(0.2553, abs=5e-4) and hi == pytest.approx(0.3662, abs=5e-4)
    assert wilson(0, 10)[0] == 0.0 and wilson(0, 10)[1] == pytest.approx(0.2775, abs=5e-4)
    assert wilson(10, 10)[1] == 1.0
    with pytest.raises(ValueError):
        wilson(5, 3)


def test_newcombe_difference_matches_reference() -> None:
    # Newcombe (1998) example: 56/70 vs 48/80 -> +0.2000, 95% CI 0.0524 to 0.3339
    d, lo, hi = newcombe(56, 70, 48, 80)
    assert d == pytest.approx(0.2)
    assert lo == pytest.approx(0.0524, abs=5e-4) and hi == pytest.approx(0.3339, abs=5e-4)


def test_bootstrap_diff_covers_the_truth_and_is_seeded() -> None:
    a, b = [1.0] * 30 + [0.0] * 10, [1.0] * 10 + [0.0] * 30
    d, lo, hi = bootstrap_diff(a, b, seed=1)
    assert d == pytest.approx(0.5) and lo < 0.5 < hi and lo > 0.2
    assert bootstrap_diff(a, b, seed=1) == (d, lo, hi)


def test_paired_bootstrap_is_tighter_than_independent_for_paired_items() -> None:
    # 20 items: the treatment flips exactly 6 of them from right (0) to wrong (1)
    diffs = [1.0] * 6 + [0.0] * 14
    d, lo, hi = paired_bootstrap(diffs, seed=0)
    assert d == pytest.approx(0.3) and 0.0 < lo < 0.3 < hi
    nd, nlo, nhi = newcombe(6, 20, 0, 20)
    assert nd == pytest.approx(d) and (hi - lo) <= (nhi - nlo)


def test_newcombe_paired_interval() -> None:
    # every item agrees: zero difference but an honest, non-degenerate interval
    d, lo, hi = newcombe_paired([(1, 1)] * 6)
    assert d == 0.0 and lo == pytest.approx(-hi) and hi > 0.3
    # 6 of 20 items flip from 0 to 1 and nothing flips back: the interval excludes 0
    pairs = [(1, 0)] * 6 + [(0, 0)] * 10 + [(1, 1)] * 4
    d, lo, hi = newcombe_paired(pairs)
    assert d == pytest.approx(0.3) and 0.0 < lo < 0.3 < hi < 1.0
    # pairing helps: tighter than treating the two conditions as independent samples
    _, nlo, nhi = newcombe(10, 20, 4, 20)
    assert hi - lo < nhi - nlo


def test_wilson_at_the_bounds_and_rate() -> None:
    lo, hi = wilson(0, 10)
    assert lo == 0 and hi == pytest.approx(0.2775, abs=1e-3)
    lo, hi = wilson(5, 10)
    assert (lo, hi) == pytest.approx((0.2366, 0.7634), abs=1e-3)
    r = Rate(9, 10)
    assert r.rate == 0.9 and r.ci[0] < 0.9 < r.ci[1]


def test_auroc_ci_brackets_the_estimate_and_narrows_with_n() -> None:
    rng = np.random.default_rng(0)
    widths = []
    for n in (40, 400):
        y = np.r_[np.ones(n), np.zeros(n)]
        s = rng.standard_normal(2 * n) + y
        a = auroc(s, y)
        lo, hi = auroc_ci(s, y)
        assert lo <= a <= hi
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2


def test_perfect_and_chance_auroc() -> None:
    y = np.array([1, 1, 0, 0])
    assert auroc(np.array([3.0, 2, 1, 0]), y) == 1.0
    assert auroc_ci(np.array([3.0, 2, 1, 0]), y) == (1.0, 1.0)
    with pytest.raises(UsageError, match="both classes"):
        auroc(np.array([1.0, 2.0]), np.array([1, 1]))
