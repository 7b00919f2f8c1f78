from __future__ import annotations

import numpy as np
import pytest

from tripwire.errors import UsageError
from tripwire.whitebox.metrics import (
    cv_auroc,
    evaluate_scores,
    random_direction_auroc,
    threshold_at_fpr,
)


def test_threshold_sets_control_fpr() -> None:
    control = np.arange(1000, dtype=float)
    thr = threshold_at_fpr(control, 0.01)
    assert (control > thr).mean() <= 0.01
    with pytest.raises(UsageError, match="empty"):
        threshold_at_fpr(np.array([]))


def test_random_baseline_is_high_when_the_feature_is_salient() -> None:
    # A huge shift on many axes: random directions separate it too (Anthropic's caveat).
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(100), np.zeros(100)]
    X = rng.standard_normal((200, 16)) + 5 * y[:, None]
    assert random_direction_auroc(X, y, n=50) > 0.95
    # A one-axis planted shift in high dimension: random directions rarely find it.
    X2 = rng.standard_normal((200, 512))
    X2[:, 0] += 3 * y
    assert random_direction_auroc(X2, y, n=50) < 0.8


def test_evaluate_scores_reports_every_control() -> None:
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(50), np.zeros(50)]
    X = rng.standard_normal((100, 8))
    X[:, 0] += 3 * y
    scores = X[:, 0]
    control = rng.standard_normal(500)
    res = evaluate_scores(scores, y, X, control_scores=control)
    d = res.to_dict()
    for key in (
        "auroc",
        "auroc_ci",
        "random_baseline_auroc",
        "recall_at_1pct_fpr",
        "honest_fpr",
        "control_fpr",
        "threshold",
    ):
        assert d[key] is not None
    assert d["control_fpr"] <= 0.011
    assert d["recall_at_1pct_fpr"] > 0.5
    assert d["random_baseline_auroc"] < d["auroc"]


def test_cv_auroc_groups_pairs() -> None:
    rng = np.random.default_rng(2)
    n = 40
    y = np.r_[np.ones(n), np.zeros(n)].astype(int)
    pid = np.r_[np.arange(n), np.arange(n)]
    X = rng.standard_normal((2 * n, 5))
    X[:, 1] += 2 * y
    assert cv_auroc(X, pid, y, folds=4, seed=0) > 0.8
