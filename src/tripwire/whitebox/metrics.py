"""Honest detection metrics, always reported together.

* AUROC with a stratified bootstrap 95% CI;
* recall at 1% FPR, the threshold set on a **neutral control set** (never on the test set);
* FPR on **honest samples from the same distribution** at that threshold;
* the best of N random directions as a baseline (sign chosen in its favour: a strict control).

AUROC and its interval live in :mod:`tripwire.stats` with every other statistic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tripwire.errors import UsageError
from tripwire.stats import auroc, auroc_ci, rank_rows


def threshold_at_fpr(control_scores: np.ndarray, fpr: float = 0.01) -> float:
    """The score above which a fraction ``fpr`` of the neutral control set falls."""
    control_scores = np.asarray(control_scores, dtype=np.float64)
    if control_scores.size == 0:
        raise UsageError("the control set is empty; a threshold needs neutral samples")
    return float(np.quantile(control_scores, 1 - fpr, method="higher"))


def rate_above(scores: np.ndarray, threshold: float) -> float:
    scores = np.asarray(scores, dtype=np.float64)
    return float((scores > threshold).mean()) if scores.size else float("nan")


def random_direction_auroc(X: np.ndarray, labels: np.ndarray, n: int = 100, seed: int = 0) -> float:
    """Best AUROC of ``n`` random unit directions on ``X`` (each taken in its better sign).

    Ranks are computed for all directions at once, so ``n = 1000`` costs little.
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(labels)
    n_pos, n_neg = int((y == 1).sum()), int((y == 0).sum())
    if n_pos == 0 or n_neg == 0:
        raise UsageError("AUROC needs both classes among the labels")
    rng = np.random.default_rng(seed)
    dirs = rng.standard_normal((X.shape[1], n))
    dirs /= np.linalg.norm(dirs, axis=0, keepdims=True)
    ranks = rank_rows(X @ dirs, axis=0)
    aucs = (ranks[y == 1].sum(0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return float(np.maximum(aucs, 1 - aucs).max())


@dataclass
class DetectionResult:
    """One detector's honest evaluation. ``None`` where the needed set was not given."""

    auroc: float
    auroc_ci: tuple[float, float]
    random_baseline_auroc: float
    n_pos: int
    n_neg: int
    threshold: float | None = None
    recall_at_1pct_fpr: float | None = None
    control_fpr: float | None = None
    honest_fpr: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["auroc_ci"] = list(self.auroc_ci)
        return d


def evaluate_scores(
    scores: np.ndarray,
    labels: np.ndarray,
    X_for_baseline: np.ndarray,
    control_scores: np.ndarray | None = None,
    honest_scores: np.ndarray | None = None,
    n_random: int = 100,
    seed: int = 0,
) -> DetectionResult:
    """Evaluate precomputed scores with every control.

    Args:
        scores, labels: test-set scores (higher = positive) and 0/1 labels.
        X_for_baseline: the test-set activations, for the random-direction baseline.
        control_scores: scores on a neutral control set; sets the 1%-FPR threshold.
        honest_scores: scores on honest samples of the test distribution (FPR at that threshold).
    """
    labels = np.asarray(labels)
    res = DetectionResult(
        auroc=auroc(scores, labels),
        auroc_ci=auroc_ci(scores, labels, seed=seed),
        random_baseline_auroc=random_direction_auroc(X_for_baseline, labels, n_random, seed),
        n_pos=int((labels == 1).sum()),
        n_neg=int((labels == 0).sum()),
    )
    if control_scores is not None:
        thr = threshold_at_fpr(control_scores, 0.01)
        res.threshold = thr
        res.recall_at_1pct_fpr = rate_above(np.asarray(scores)[labels == 1], thr)
        res.control_fpr = rate_above(control_scores, thr)
        honest = np.asarray(scores)[labels == 0] if honest_scores is None else honest_scores
        res.honest_fpr = rate_above(honest, thr)
    return res


def cv_auroc(
    X: np.ndarray,
    pair_ids: np.ndarray,
    y: np.ndarray,
    folds: int,
    seed: int,
    factory: Callable[[], Any] | None = None,
) -> float:
    """Mean AUROC over folds that split by pair (a pair never straddles train and test).

    ``factory`` builds the detector (default: difference of means).
    """
    if factory is None:
        from tripwire.whitebox.detectors import DiffMeans

        factory = DiffMeans
    uniq = np.unique(pair_ids)
    order = np.random.default_rng(seed).permutation(uniq)
    scores = []
    for k in range(folds):
        held = np.isin(pair_ids, order[k::folds])
        det = factory().fit(X[~held], y[~held])
        scores.append(auroc(det.score_samples(X[held]), y[held]))
    return float(np.mean(scores))


__all__ = [
    "DetectionResult",
    "cv_auroc",
    "evaluate_scores",
    "random_direction_auroc",
    "rate_above",
    "threshold_at_fpr",
]
