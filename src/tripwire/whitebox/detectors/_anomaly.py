"""Outlier detectors fitted on trusted rows only: mechanistic anomaly detection on activations.

Fitted on activations of trusted, clean traffic (no labels, no triggers), they flag rows whose
activations are unlike it - the recipe of the mechanistic-anomaly-detection literature (a
Gaussian per layer with a shrunk covariance, distances z-scored per layer and averaged, so no
layer is chosen with anybody's labels). They follow scikit-learn's outlier-detector contract:
``fit(X)`` (``y`` ignored), ``score_samples`` **higher = more normal**, ``decision_function =
score_samples - offset_`` with ``offset_`` set so that a fraction ``contamination`` of the
training rows falls below 0, and ``predict`` giving +1 (inlier) or -1 (outlier). Read them
with :func:`~tripwire.whitebox.detectors.suspicion` for "higher = more suspicious".
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from scipy.linalg import cho_factor, cho_solve
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.covariance import ledoit_wolf_shrinkage
from sklearn.utils.validation import validate_data

from tripwire.errors import UsageError
from tripwire.whitebox.detectors._base import Persisted


class AnomalyDetector(OutlierMixin, BaseEstimator, Persisted):
    """Base class: ``score_samples`` (higher = more normal), ``offset_`` from contamination."""

    contamination: float

    def _finish(self, X: np.ndarray) -> None:
        self.offset_ = float(np.percentile(self._normality(X), 100.0 * self.contamination))

    def _normality(self, X: np.ndarray) -> np.ndarray:
        raise TypeError(f"{type(self).__name__} must define _normality")

    def _checked(self, X: Any) -> np.ndarray:
        self._require_fitted()
        return np.asarray(validate_data(self, X, reset=False, dtype=np.float64))

    def _check_contamination(self) -> None:
        if not 0.0 < float(self.contamination) <= 0.5:
            raise ValueError(f"contamination must be in (0, 0.5], got {self.contamination!r}")

    def score_samples(self, X: Any) -> np.ndarray:
        """Normality per row: higher = more like the trusted rows."""
        return self._normality(self._checked(X))

    def decision_function(self, X: Any) -> np.ndarray:
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        return np.where(self.decision_function(X) >= 0, 1, -1)


def _gaussian(X: np.ndarray) -> tuple[np.ndarray, Any]:
    """Mean and Cholesky factor of the Ledoit-Wolf shrunk covariance of ``X``.

    The shrinkage is scikit-learn's :func:`~sklearn.covariance.ledoit_wolf_shrinkage`; the
    shrunk covariance is inverted by Cholesky (it is positive definite once shrunk; a floor of
    1e-6 of its mean variance keeps it so when the shrinkage is zero), which is several times
    faster than the eigendecomposition :class:`~sklearn.covariance.LedoitWolf` uses.
    """
    mean = X.mean(axis=0)
    c = X - mean
    n, d = c.shape
    alpha = float(ledoit_wolf_shrinkage(c, assume_centered=True)) if n > 1 else 1.0
    mu = float((c * c).sum()) / (n * d)  # mean variance: the shrinkage target is mu * I
    cov = (1.0 - alpha) * (c.T @ c) / n
    cov[np.diag_indices(d)] += max(alpha * mu, 1e-6 * mu, 1e-12)
    return mean, cho_factor(cov, lower=True)


def _precision(factor: Any) -> np.ndarray:
    return np.asarray(cho_solve(factor, np.eye(factor[0].shape[0])))


def _oof_distance(X: np.ndarray, mean: np.ndarray, factor: Any) -> np.ndarray:
    """:func:`_log_distance` of held-out rows straight from the factor (no inverse formed)."""
    c = X - mean
    d = (c * np.asarray(cho_solve(factor, c.T)).T).sum(axis=1) / X.shape[1]
    return np.log(np.maximum(d, 1e-12))


def _log_distance(X: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Log of the squared Mahalanobis distance per row, divided by the dimension."""
    c = X - mean
    d = ((c @ precision) * c).sum(axis=1) / X.shape[1]
    return np.log(np.maximum(d, 1e-12))


class MahalanobisDetector(AnomalyDetector):
    """Mahalanobis distance from trusted rows, per block of features, z-scored and averaged.

    ``X`` is ``n_blocks`` equal feature blocks side by side (e.g. every layer's activations, see
    :meth:`~tripwire.whitebox.Activations.stack`). Each block gets a Gaussian with a Ledoit-Wolf
    shrunk covariance; its log distances are z-scored with the mean and spread of
    **out-of-fold** distances on the training rows (``folds``-fold cross-fitting, so in-sample
    overfitting does not shrink the scale), and the blocks' z-scores are averaged.

    Args:
        n_blocks: how many equal feature blocks ``X`` holds (1 = plain Mahalanobis).
        folds: cross-fitting folds for the per-block scale (fewer when rows are few).
        contamination: share of training rows treated as outliers by ``predict``.

    Example:
        >>> import numpy as np
        >>> rng = np.random.default_rng(0)
        >>> det = MahalanobisDetector().fit(rng.standard_normal((200, 5)))
        >>> det.predict(np.r_[np.zeros((1, 5)), np.full((1, 5), 9.0)]).tolist()
        [1, -1]
    """

    kind = "mahalanobis"
    _arrays: ClassVar[tuple[str, ...]] = ("means_", "precisions_", "z_mean_", "z_std_")

    def __init__(self, n_blocks: int = 1, folds: int = 5, contamination: float = 0.01) -> None:
        self.n_blocks = n_blocks
        self.folds = folds
        self.contamination = contamination

    def fit(self, X: Any, y: Any = None) -> MahalanobisDetector:
        X = validate_data(self, X, dtype=np.float64)
        self._check_contamination()
        n, f = X.shape
        if n < 2:
            raise ValueError(f"MahalanobisDetector needs at least 2 samples, got n_samples = {n}")
        if self.n_blocks < 1 or f % self.n_blocks:
            raise UsageError(f"{f} features do not split into {self.n_blocks} equal blocks")
        width = f // self.n_blocks
        k = min(int(self.folds), n // 2)
        fold = np.random.default_rng(0).permutation(n) % max(k, 1)
        means, precs, zm, zs = [], [], [], []
        for b in range(self.n_blocks):
            Xb = X[:, b * width : (b + 1) * width]
            oof = np.empty(n)
            if k >= 2:
                for j in range(k):
                    m, fac = _gaussian(Xb[fold != j])
                    oof[fold == j] = _oof_distance(Xb[fold == j], m, fac)
            m, fac = _gaussian(Xb)
            p = _precision(fac)
            if k < 2:
                oof = _log_distance(Xb, m, p)
            means.append(m)
            precs.append(p)
            zm.append(float(oof.mean()))
            zs.append(float(oof.std()) or 1.0)
        self.means_ = np.stack(means)
        self.precisions_ = np.stack(precs)
        self.z_mean_ = np.asarray(zm)
        self.z_std_ = np.asarray(zs)
        self._finish(X)
        return self

    def block_z(self, X: Any) -> np.ndarray:
        """Per-block z-scored log distances, ``(n_rows, n_blocks)``: higher = more unusual."""
        X = self._checked(X)
        return self._block_z(X)

    def _block_z(self, X: np.ndarray) -> np.ndarray:
        width = X.shape[1] // self.n_blocks
        cols = [
            _log_distance(X[:, b * width : (b + 1) * width], self.means_[b], self.precisions_[b])
            for b in range(self.n_blocks)
        ]
        return (np.stack(cols, axis=1) - self.z_mean_) / self.z_std_

    def _normality(self, X: np.ndarray) -> np.ndarray:
        return -self._block_z(X).mean(axis=1)


class ZScoreDetector(AnomalyDetector):
    """One-sided z-scores of features whose large values are suspicious (e.g. a divergence).

    Each column is standardised with the trusted rows' mean and spread (after ``log1p`` when
    ``log`` is set, for positive, skewed features), and the columns are averaged (or their
    maximum taken).

    Args:
        log: apply ``log1p`` to the (non-negative) features first.
        aggregate: ``"mean"`` or ``"max"`` over columns.
        contamination: share of training rows treated as outliers by ``predict``.
    """

    kind = "zscore"
    _arrays: ClassVar[tuple[str, ...]] = ("mean_", "scale_")

    def __init__(
        self, log: bool = False, aggregate: str = "mean", contamination: float = 0.01
    ) -> None:
        self.log = log
        self.aggregate = aggregate
        self.contamination = contamination

    def _transform(self, X: np.ndarray) -> np.ndarray:
        return np.log1p(np.maximum(X, 0.0)) if self.log else X

    def fit(self, X: Any, y: Any = None) -> ZScoreDetector:
        X = validate_data(self, X, dtype=np.float64)
        self._check_contamination()
        if self.aggregate not in ("mean", "max"):
            raise ValueError(f"aggregate must be 'mean' or 'max', got {self.aggregate!r}")
        T = self._transform(X)
        self.mean_ = T.mean(axis=0)
        self.scale_ = T.std(axis=0) + 1e-9
        self._finish(X)
        return self

    def _normality(self, X: np.ndarray) -> np.ndarray:
        z = (self._transform(X) - self.mean_) / self.scale_
        return -(z.max(axis=1) if self.aggregate == "max" else z.mean(axis=1))


__all__ = ["AnomalyDetector", "MahalanobisDetector", "ZScoreDetector"]
