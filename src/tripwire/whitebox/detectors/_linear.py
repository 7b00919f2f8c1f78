"""Linear classifiers on activation arrays, following scikit-learn's estimator contract.

``__init__`` only stores hyper-parameters; ``fit(X, y)`` returns ``self``; learned state ends in
``_``; ``score_samples(X)`` is the raw score, **higher = more like the positive class (y = 1)**;
``decision_function = score_samples - offset_`` and ``predict`` thresholds it at 0. They are
binary classifiers (declared in their scikit-learn tags) and pass ``check_estimator``. Detectors
save as safetensors (arrays) + JSON (parameters), never pickle. The language model stays out of
the estimator: capture activations first (:mod:`tripwire.whitebox.capture`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from tripwire.errors import UsageError
from tripwire.whitebox.detectors._base import REGISTRY, Persisted, unit


class Detector(ClassifierMixin, BaseEstimator, Persisted):
    """Base class: a linear score ``X @ direction_ + bias_`` with a decision offset."""

    _arrays: ClassVar[tuple[str, ...]] = ("direction_",)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        return tags

    # -- fitting ---------------------------------------------------------------
    def _check_fit(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        classes = np.unique(y)
        if len(classes) > 2:
            raise ValueError(
                f"Only binary classification is supported: {type(self).__name__} got "
                f"{len(classes)} classes {classes.tolist()}"
            )
        if len(classes) < 2:
            raise ValueError(
                f"{type(self).__name__} needs both classes in y, got 1 class {classes.tolist()}"
            )
        self.classes_ = classes
        return X, (y == classes[1]).astype(np.int64)

    def _finish(self, X: np.ndarray, y: np.ndarray) -> None:
        """Set ``offset_`` midway between the class means of the training scores."""
        s = self._raw(X)
        self.offset_ = float((s[y == 1].mean() + s[y == 0].mean()) / 2)

    def _raw(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X, dtype=np.float64) @ self.direction_ + float(
            getattr(self, "bias_", 0.0)
        )

    # -- scoring ---------------------------------------------------------------
    def _checked(self, X: Any) -> np.ndarray:
        self._require_fitted()
        return np.asarray(validate_data(self, X, reset=False, dtype=np.float64))

    def score_samples(self, X: Any) -> np.ndarray:
        """Raw score per row; higher = more like the positive class."""
        return self._raw(self._checked(X))

    def decision_function(self, X: Any) -> np.ndarray:
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> np.ndarray:
        return np.where(self.decision_function(X) > 0, self.classes_[1], self.classes_[0])

    @property
    def unit_direction(self) -> np.ndarray:
        """The detector's direction in activation space, unit length (for steering)."""
        self._require_fitted()
        return unit(np.asarray(self.direction_, dtype=np.float64))


class DiffMeans(Detector):
    """Difference of means: ``direction_ = mean(X | y=1) - mean(X | y=0)``.

    Args:
        normalize: scale the direction to unit length (scores are then projections).

    Example:
        >>> import numpy as np
        >>> X = np.r_[np.ones((5, 3)), -np.ones((5, 3))]; y = np.r_[np.ones(5), np.zeros(5)]
        >>> DiffMeans().fit(X, y).predict(X).tolist() == y.tolist()
        True
    """

    kind = "diffmeans"

    def __init__(self, normalize: bool = True) -> None:
        self.normalize = normalize

    def fit(self, X: Any, y: Any) -> DiffMeans:
        X, yb = self._check_fit(X, y)
        d = X[yb == 1].mean(0) - X[yb == 0].mean(0)
        self.direction_ = unit(d) if self.normalize else d
        self._finish(X, yb)
        return self


class LogisticProbe(Detector):
    """Logistic regression on standardised features (Apollo's deception probe recipe).

    Args:
        C: inverse L2 strength (Apollo used reg_coeff=10, i.e. C=0.1).
        max_iter: solver iterations.
    """

    kind = "logistic"
    _arrays = ("direction_", "mean_", "scale_")

    def __init__(self, C: float = 0.1, max_iter: int = 2000) -> None:
        self.C = C
        self.max_iter = max_iter

    def fit(self, X: Any, y: Any) -> LogisticProbe:
        X, yb = self._check_fit(X, y)
        self.mean_ = X.mean(0)
        self.scale_ = X.std(0) + 1e-6
        lr = LogisticRegression(C=self.C, max_iter=self.max_iter, fit_intercept=False)
        lr.fit((X - self.mean_) / self.scale_, yb)
        self.n_iter_ = int(lr.n_iter_[0])
        w = lr.coef_[0] / self.scale_
        # Fold standardisation into a raw-space linear score: ((X - m) / s) @ c = X @ w + b.
        self.direction_ = w
        self.bias_ = float(-(self.mean_ @ w))
        self._finish(X, yb)
        return self


class LATProbe(Detector):
    """RepE's linear artificial tomography: first principal component of paired differences.

    Positives and negatives are paired at random, differences get random signs, and the top
    right singular vector is the direction; its sign is set so positives score higher.

    Args:
        random_state: seed for pairing and sign flips.
    """

    kind = "lat"

    def __init__(self, random_state: int = 0) -> None:
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> LATProbe:
        X, yb = self._check_fit(X, y)
        rng = np.random.default_rng(self.random_state)
        pos, neg = X[yb == 1], X[yb == 0]
        n = max(len(pos), len(neg))
        diffs = pos[rng.integers(0, len(pos), n)] - neg[rng.integers(0, len(neg), n)]
        diffs *= rng.choice([-1.0, 1.0], size=(n, 1))
        diffs -= diffs.mean(0)
        _, _, vt = np.linalg.svd(diffs, full_matrices=False)
        d = vt[0]
        if (pos @ d).mean() < (neg @ d).mean():
            d = -d
        self.direction_ = d
        self._finish(X, yb)
        return self


class LayerEnsemble(Detector):
    """Average of per-layer detectors, each z-scored on its own training scores.

    ``X`` is the feature-wise concatenation of ``n_layers`` equal blocks (see
    :meth:`Activations.stack`). Each block gets its own base detector.

    Args:
        n_layers: how many equal feature blocks ``X`` holds.
        base: the per-layer detector kind (``diffmeans``, ``logistic`` or ``lat``).
    """

    kind = "ensemble"
    _arrays = ("direction_",)

    def __init__(self, n_layers: int = 1, base: str = "diffmeans") -> None:
        self.n_layers = n_layers
        self.base = base

    def fit(self, X: Any, y: Any) -> LayerEnsemble:
        X, yb = self._check_fit(X, y)
        if self.base not in LINEAR or self.base == self.kind:
            raise UsageError(f"unknown base detector {self.base!r}: use diffmeans, logistic or lat")
        if self.n_layers < 1 or X.shape[1] % self.n_layers:
            raise UsageError(
                f"{X.shape[1]} features do not split into {self.n_layers} equal layers"
            )
        width = X.shape[1] // self.n_layers
        parts, bias = [], 0.0
        for k in range(self.n_layers):
            block = X[:, k * width : (k + 1) * width]
            det = LINEAR[self.base]().fit(block, yb)
            s = det.score_samples(block)
            sd = float(s.std()) or 1.0
            # z-score each layer: (X_k @ w + b - mean) / sd, averaged over layers.
            parts.append(det.direction_ / sd / self.n_layers)
            bias += (float(getattr(det, "bias_", 0.0)) - float(s.mean())) / sd / self.n_layers
        self.direction_ = np.concatenate(parts)
        self.bias_ = bias
        self._finish(X, yb)
        return self


#: The linear classifiers by registry name (the base kinds a :class:`LayerEnsemble` can use).
LINEAR: dict[str, type[Detector]] = {
    k: v for k, v in REGISTRY.items() if isinstance(v, type) and issubclass(v, Detector)
}

__all__ = ["LINEAR", "Detector", "DiffMeans", "LATProbe", "LayerEnsemble", "LogisticProbe"]
