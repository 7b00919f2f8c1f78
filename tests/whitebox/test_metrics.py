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
    thr = threshold_at_fpr(control, 0.01)
    assert res.threshold == thr
    assert res.control_fpr == (control > thr).mean() and res.control_fpr <= 0.011
    assert res.recall_at_1pct_fpr == (scores[y == 1] > thr).mean() > 0.5
    # Without honest samples given, the honest FPR is read on the test set's negatives ...
    assert res.honest_fpr == (scores[y == 0] > thr).mean()
    assert res.auroc_ci[0] <= res.auroc <= res.auroc_ci[1]
    assert res.random_baseline_auroc < res.auroc
    # ... and given, on them: honest samples all above the threshold give an FPR of 1.
    honest = np.full(20, thr + 1.0)
    assert evaluate_scores(scores, y, X, control, honest_scores=honest).honest_fpr == 1.0
    # No control set: no threshold and no rates, rather than made-up ones.
    bare = evaluate_scores(scores, y, X)
    assert bare.threshold is None and bare.recall_at_1pct_fpr is None and bare.honest_fpr is None


def test_cv_auroc_keeps_each_group_on_one_side() -> None:
    """Rows of a group share a large group-specific offset and the label of their group, and
    nothing else carries the label. Splitting by group gives chance; splitting rows (each its
    own group) lets the offsets leak the label into the test folds."""
    rng = np.random.default_rng(2)
    n_groups, per_group, d = 16, 12, 32
    group = np.repeat(np.arange(n_groups), per_group)
    y = (group % 2).astype(int)
    offsets = 3.0 * rng.standard_normal((n_groups, d))
    X = offsets[group] + 0.1 * rng.standard_normal((len(group), d))
    grouped = cv_auroc(X, group, y, folds=4, seed=0)
    by_row = cv_auroc(X, np.arange(len(group)), y, folds=4, seed=0)
    assert grouped < 0.75
    assert by_row > 0.95
    # A real signal survives the grouped split.
    X[:, 0] += 12.0 * y
    assert cv_auroc(X, group, y, folds=4, seed=0) > 0.9
