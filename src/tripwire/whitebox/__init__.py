"""The white-box toolkit: capture activations, fit honest detectors, concept vectors, steering.

The studies built on it (defection probes, the tamper test, plausibility and eval-awareness
probes, checkpoint drift, data screening) live in :mod:`tripwire.checks`; ``auroc`` and
``auroc_ci`` are re-exported from :mod:`tripwire.stats` for convenience."""

from tripwire.stats import auroc, auroc_ci
from tripwire.whitebox.capture import Activations, capture
from tripwire.whitebox.concepts import ConceptEval, ConceptVector, extract_concepts, trace
from tripwire.whitebox.detectors import (
    DETECTORS,
    Detector,
    DiffMeans,
    LATProbe,
    LayerEnsemble,
    LogisticProbe,
    MahalanobisDetector,
    ZScoreDetector,
    make_detector,
    suspicion,
)
from tripwire.whitebox.generation import generate
from tripwire.whitebox.metrics import (
    DetectionResult,
    evaluate_scores,
    random_direction_auroc,
    threshold_at_fpr,
)
from tripwire.whitebox.steering import (
    ablate_everywhere,
    export_control_vector,
    orthogonalize,
    read_control_vector,
    steer,
)

__all__ = [
    "DETECTORS",
    "Activations",
    "ConceptEval",
    "ConceptVector",
    "DetectionResult",
    "Detector",
    "DiffMeans",
    "LATProbe",
    "LayerEnsemble",
    "LogisticProbe",
    "MahalanobisDetector",
    "ZScoreDetector",
    "ablate_everywhere",
    "auroc",
    "auroc_ci",
    "capture",
    "evaluate_scores",
    "export_control_vector",
    "extract_concepts",
    "generate",
    "make_detector",
    "orthogonalize",
    "random_direction_auroc",
    "read_control_vector",
    "steer",
    "suspicion",
    "threshold_at_fpr",
    "trace",
]
