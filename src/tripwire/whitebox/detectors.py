"""Linear detectors on activation arrays, following scikit-learn's estimator contract.

``__init__`` only stores hyper-parameters; ``fit(X, y)`` returns ``self``; learned state ends in
``_``; ``score_samples(X)`` is the raw score, **higher = more like the positive class (y = 1)**;
``decision_function = score_samples - offset_`` and ``predict`` thresholds it at 0. Detectors
save as safetensors (arrays) + JSON (parameters), never pickle. The language model stays out of
the estimator: capture activations first (:mod:`tripwire.whitebox.capture`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from safetensors.numpy import load_file, save_file
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted, check_X_y, validate_data

from tripwire._io import atomic_path, write_json
from tripwire.errors import NotFittedError, UsageError

_REGISTRY: dict[str, type[Detector]] = {}


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


class Detector(ClassifierMixin, BaseEstimator):
    """Base class: a linear score ``X @ direction_ + bias_`` with a decision offset."""

    kind: ClassVar[str] = ""
    _arrays: ClassVar[tuple[str, ...]] = ("direction_",)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            _REGISTRY[cls.kind] = cls

    # -- fitting ---------------------------------------------------------------
    def _check_fit(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        X, y = check_X_y(X, y, dtype=np.float64)
        classes = np.unique(y)
        if len(classes) != 2:
            raise ValueError(f"detectors need exactly two classes in y, got {classes.tolist()}")
        self.classes_ = classes
        self.n_features_in_ = X.shape[1]
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
        try:
            check_is_fitted(self)
        except Exception:
            raise NotFittedError(
                f"{type(self).__name__} is not fitted yet: call fit(X, y) first"
            ) from None
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
        check_is_fitted(self)
        return _unit(np.asarray(self.direction_, dtype=np.float64))

    # -- persistence -----------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write ``path.safetensors`` (arrays) and ``path.json`` (class, params, scalars)."""
        check_is_fitted(self)
        base = Path(path)
        arrays = {name: np.ascontiguousarray(getattr(self, name)) for name in self._arrays}
        arrays["classes_"] = np.asarray(self.classes_)
        with atomic_path(base.with_suffix(".safetensors")) as tmp:
            save_file(arrays, str(tmp))
        scalars = {
            k: v
            for k, v in vars(self).items()
            if k.endswith("_") and isinstance(v, int | float) and not isinstance(v, bool)
        }
        write_json(
            base.with_suffix(".json"),
            {"kind": self.kind, "params": self.get_params(), "fitted": scalars},
        )

    @staticmethod
    def load(path: str | Path) -> Detector:
        base = Path(path)
        meta_file, arr_file = base.with_suffix(".json"), base.with_suffix(".safetensors")
        if not meta_file.is_file() or not arr_file.is_file():
            raise UsageError(
                f"no saved detector at {base}: need {meta_file.name} and {arr_file.name}"
            )
        meta = json.loads(meta_file.read_text())
        cls = _REGISTRY.get(meta.get("kind", ""))
        if cls is None:
            raise UsageError(f"{meta_file} names unknown detector kind {meta.get('kind')!r}")
        det = cls(**meta["params"])
        for k, v in meta["fitted"].items():
            setattr(det, k, v)
        for k, v in load_file(str(arr_file)).items():
            setattr(det, k, v)
        return det


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
        self.direction_ = _unit(d) if self.normalize else d
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
        if self.base not in _REGISTRY or self.base == self.kind:
            raise UsageError(f"unknown base detector {self.base!r}: use diffmeans, logistic or lat")
        if self.n_layers < 1 or X.shape[1] % self.n_layers:
            raise UsageError(
                f"{X.shape[1]} features do not split into {self.n_layers} equal layers"
            )
        width = X.shape[1] // self.n_layers
        parts, bias = [], 0.0
        for k in range(self.n_layers):
            block = X[:, k * width : (k + 1) * width]
            det = _REGISTRY[self.base]().fit(block, yb)
            s = det.score_samples(block)
            sd = float(s.std()) or 1.0
            # z-score each layer: (X_k @ w + b - mean) / sd, averaged over layers.
            parts.append(det.direction_ / sd / self.n_layers)
            bias += (float(getattr(det, "bias_", 0.0)) - float(s.mean())) / sd / self.n_layers
        self.direction_ = np.concatenate(parts)
        self.bias_ = bias
        self._finish(X, yb)
        return self


DETECTORS: dict[str, type[Detector]] = _REGISTRY


def make_detector(kind: str, **params: Any) -> Detector:
    """Build a detector by registry name: ``diffmeans``, ``logistic``, ``lat``, ``ensemble``."""
    if kind not in _REGISTRY:
        raise UsageError(f"unknown detector {kind!r}: choose one of {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[kind](**params)


__all__ = [
    "DETECTORS",
    "Detector",
    "DiffMeans",
    "LATProbe",
    "LayerEnsemble",
    "LogisticProbe",
    "make_detector",
]
