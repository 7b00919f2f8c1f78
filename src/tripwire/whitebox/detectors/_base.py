"""What every detector shares: the registry, safetensors + JSON persistence, the fitted check.

Two kinds of estimator follow scikit-learn's contracts exactly (``check_estimator`` passes):

* **classifiers** (:class:`~tripwire.whitebox.detectors.Detector`): binary only,
  ``score_samples`` higher = more like the positive class (y = 1);
* **outlier detectors** (:class:`~tripwire.whitebox.detectors.AnomalyDetector`): fitted on
  trusted rows only (``fit(X)``), with scikit-learn's outlier convention - ``score_samples``
  higher = more normal, ``predict`` gives -1 for an outlier.

:func:`suspicion` reads either kind the one way tripwire needs: higher = more suspicious.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from safetensors.numpy import load_file, save_file
from sklearn.exceptions import NotFittedError as _SklearnNotFitted
from sklearn.utils.validation import check_is_fitted

from tripwire._io import atomic_path, write_json
from tripwire.errors import NotFittedError, UsageError

REGISTRY: dict[str, type[Persisted]] = {}


class DetectorNotFitted(NotFittedError, _SklearnNotFitted):
    """A detector was scored before ``fit``: tripwire's error and scikit-learn's at once."""


class Persisted:
    """Registry and persistence: ``save(path)`` writes ``path.safetensors`` + ``path.json``."""

    kind: ClassVar[str] = ""
    #: fitted array attributes written to the safetensors file
    _arrays: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            REGISTRY[cls.kind] = cls

    def _require_fitted(self) -> None:
        try:
            check_is_fitted(self)
        except _SklearnNotFitted:
            raise DetectorNotFitted(
                f"{type(self).__name__} is not fitted yet: call fit first"
            ) from None

    def save(self, path: str | Path) -> None:
        """Write ``path.safetensors`` (arrays) and ``path.json`` (kind, params, scalars)."""
        self._require_fitted()
        base = Path(path)
        arrays = {name: np.ascontiguousarray(getattr(self, name)) for name in self._arrays}
        if hasattr(self, "classes_"):
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
            {"kind": self.kind, "params": self.get_params(), "fitted": scalars},  # type: ignore[attr-defined]
        )

    @staticmethod
    def load(path: str | Path) -> Any:
        """Read a detector written by :meth:`save` (any registered kind)."""
        base = Path(path)
        meta_file, arr_file = base.with_suffix(".json"), base.with_suffix(".safetensors")
        if not meta_file.is_file() or not arr_file.is_file():
            raise UsageError(
                f"no saved detector at {base}: need {meta_file.name} and {arr_file.name}"
            )
        meta = json.loads(meta_file.read_text())
        cls = REGISTRY.get(meta.get("kind", ""))
        if cls is None:
            raise UsageError(f"{meta_file} names unknown detector kind {meta.get('kind')!r}")
        det = cls(**meta["params"])
        for k, v in meta["fitted"].items():
            setattr(det, k, v)
        for k, v in load_file(str(arr_file)).items():
            setattr(det, k, v)
        return det


def suspicion(detector: Any, X: Any) -> np.ndarray:
    """Higher = more suspicious, for a classifier (its score) or an outlier detector (minus its
    normality score)."""
    from sklearn.base import is_outlier_detector

    scores = np.asarray(detector.score_samples(X), dtype=np.float64)
    return -scores if is_outlier_detector(detector) else scores


def unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


__all__ = ["REGISTRY", "DetectorNotFitted", "Persisted", "suspicion", "unit"]
