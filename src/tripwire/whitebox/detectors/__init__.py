"""Detectors on activation arrays, each following scikit-learn's estimator contract.

* linear binary classifiers fitted on labelled contrast data: :class:`DiffMeans`,
  :class:`LogisticProbe`, :class:`LATProbe`, :class:`LayerEnsemble`;
* outlier detectors fitted on trusted clean traffic only: :class:`MahalanobisDetector` (per
  layer, z-scored and averaged) and :class:`ZScoreDetector` (one-sided, for divergences).

Every class passes scikit-learn's ``check_estimator``, so it drops into ``Pipeline``,
``GridSearchCV`` and ``cross_val_score``; :func:`suspicion` reads either kind as "higher = more
suspicious"; ``save``/``Detector.load`` use safetensors + JSON, never pickle.
"""

from typing import Any

from tripwire.errors import UsageError
from tripwire.whitebox.detectors._anomaly import (
    AnomalyDetector,
    MahalanobisDetector,
    ZScoreDetector,
)
from tripwire.whitebox.detectors._base import REGISTRY, DetectorNotFitted, suspicion
from tripwire.whitebox.detectors._linear import (
    LINEAR,
    Detector,
    DiffMeans,
    LATProbe,
    LayerEnsemble,
    LogisticProbe,
)

#: Every detector class by registry name.
DETECTORS = REGISTRY


def make_detector(kind: str, **params: Any) -> Any:
    """Build a detector by registry name (``diffmeans``, ``logistic``, ``lat``, ``ensemble``,
    ``mahalanobis``, ``zscore``)."""
    if kind not in REGISTRY:
        raise UsageError(f"unknown detector {kind!r}: choose one of {', '.join(sorted(REGISTRY))}")
    return REGISTRY[kind](**params)


__all__ = [
    "DETECTORS",
    "LINEAR",
    "AnomalyDetector",
    "Detector",
    "DetectorNotFitted",
    "DiffMeans",
    "LATProbe",
    "LayerEnsemble",
    "LogisticProbe",
    "MahalanobisDetector",
    "ZScoreDetector",
    "make_detector",
    "suspicion",
]
