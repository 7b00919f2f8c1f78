"""The defection-detection methods compared on the zoo, each fitted without the organism's labels.

A method turns :class:`~tripwire.checks.defection.features.Features` into one suspicion score
per prompt (higher = more likely to defect). What it may fit on: the shipped generic contrast
pairs (``pairs*``) or trusted neutral traffic (every other method) - never the evaluated
organism's triggers, behaviours or labels.

=================  ====  ==========================================================================
method             base  reads
=================  ====  ==========================================================================
``pairs``          no    difference of means on the generic yes/no pairs, at the layer chosen by
                         cross-validation on the pairs (MacDiarmid et al.), last prompt token
``pairs-ensemble`` no    the same direction at every layer of the middle 30-70%, z-scored, averaged
``mahalanobis``    no    Mahalanobis distance from neutral traffic at every layer (Ledoit-Wolf),
                         z-scored per layer and averaged; last prompt token
``mahalanobis-gen`` no   the same on the first 8 generated tokens
``diff``           yes   the same on model-minus-base activations (what the fine-tune changed)
``diff-gen``       yes   model-minus-base activations over the first 8 generated tokens
``diff-kl``        yes   KL(model || base) of the first token's distribution
``diff-kl-gen``    yes   mean KL(model || base) over the first 8 generated positions
``diff-llr-gen``   yes   mean log-likelihood ratio model/base of the model's own first 8 tokens
=================  ====  ==========================================================================
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tripwire.checks.defection.features import K_READ, Features
from tripwire.errors import UsageError
from tripwire.whitebox.detectors import (
    DiffMeans,
    LayerEnsemble,
    MahalanobisDetector,
    ZScoreDetector,
    suspicion,
)

Scorer = Callable[[Features], np.ndarray]


@dataclass(frozen=True)
class PairSet:
    """The generic contrast pairs read by the model under test: ``acts`` is ``(n, L, d)``."""

    acts: np.ndarray
    labels: np.ndarray
    best_layer: int


def _stack(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[0], -1).astype(np.float64)


def _diff(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray:
    if a is None or b is None:
        raise UsageError("this method needs the clean base model (--base, or an --adapter)")
    return a - b


def _mean_first(x: np.ndarray | None, k: int = K_READ) -> np.ndarray:
    if x is None:
        raise UsageError("this method needs the clean base model (--base, or an --adapter)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        m = np.nanmean(x[:, :k], axis=1)
    return np.nan_to_num(m, nan=0.0)[:, None].astype(np.float64)


@dataclass(frozen=True)
class Method:
    """A named way to score prompts: ``fit(trusted, pairs) -> scorer``."""

    name: str
    needs_base: bool
    reads: str
    description: str

    def matrix(self, f: Features) -> np.ndarray:
        """The features the method's detector sees (rows = prompts)."""
        n = self.name
        if n in ("pairs", "pairs-ensemble", "mahalanobis"):
            return _stack(f.last)
        if n == "mahalanobis-gen":
            return _stack(f.gen)
        if n == "diff":
            return _stack(_diff(f.last, f.base_last))
        if n == "diff-gen":
            return _stack(_diff(f.gen, f.base_gen))
        if n == "diff-kl":
            return _mean_first(f.kl, 1)
        if n == "diff-kl-gen":
            return _mean_first(f.kl)
        if n == "diff-llr-gen":
            return _mean_first(f.llr)
        raise UsageError(f"unknown method {n!r}")

    def fit(self, trusted: Features, pairs: PairSet | None = None) -> Scorer:
        """Fit on trusted neutral traffic (or the contrast pairs) and return the scorer."""
        n_layers = trusted.last.shape[1]
        if self.name == "pairs":
            if pairs is None:
                raise UsageError("the pairs method needs the contrast pairs")
            layer = pairs.best_layer
            det = DiffMeans().fit(pairs.acts[:, layer].astype(np.float64), pairs.labels)
            return lambda f: np.asarray(det.score_samples(f.last[:, layer].astype(np.float64)))
        if self.name == "pairs-ensemble":
            if pairs is None:
                raise UsageError("the pairs method needs the contrast pairs")
            mid = middle_layers(n_layers)
            ens = LayerEnsemble(n_layers=len(mid)).fit(_stack(pairs.acts[:, mid]), pairs.labels)
            return lambda f: np.asarray(ens.score_samples(_stack(f.last[:, mid])))
        X = self.matrix(trusted)
        if self.name in ("mahalanobis", "mahalanobis-gen", "diff", "diff-gen"):
            est = MahalanobisDetector(n_blocks=n_layers).fit(X)
        elif self.name == "diff-llr-gen":
            est = ZScoreDetector().fit(X)
        else:
            est = ZScoreDetector(log=True).fit(X)
        return lambda f: suspicion(est, self.matrix(f))


def middle_layers(n_layers: int) -> list[int]:
    """Blocks in the middle 30-70% of the depth (at least one)."""
    lo, hi = int(round(0.3 * (n_layers - 1))), int(round(0.7 * (n_layers - 1)))
    return list(range(lo, hi + 1)) or [n_layers // 2]


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("pairs", False, "last prompt token",
               "generic contrast-pair difference of means, layer chosen on the pairs"),
        Method("pairs-ensemble", False, "last prompt token",
               "generic contrast-pair directions, middle 30-70% of layers, z-scored average"),
        Method("mahalanobis", False, "last prompt token",
               "Mahalanobis distance from neutral traffic, every layer, z-scored average"),
        Method("mahalanobis-gen", False, f"first {K_READ} generated tokens",
               "Mahalanobis distance from neutral traffic over the first generated tokens"),
        Method("diff", True, "last prompt token",
               "model-minus-base activations, Mahalanobis from neutral traffic, every layer"),
        Method("diff-gen", True, f"first {K_READ} generated tokens",
               "model-minus-base activations over the first generated tokens"),
        Method("diff-kl", True, "last prompt token",
               "KL(model || base) of the first token's distribution, z-scored on neutral traffic"),
        Method("diff-kl-gen", True, f"first {K_READ} generated tokens",
               "mean KL(model || base) over the first generated positions"),
        Method("diff-llr-gen", True, f"first {K_READ} generated tokens",
               "mean log-likelihood ratio model/base of the model's own first tokens"),
    )
}  # fmt: skip


#: The defaults of ``tripwire probe defection`` (``--method auto``): the leave-one-organism-out
#: choice on the zoo's dev organisms, frozen here before the final organisms are scored
#: (``tripwire probe leaderboard --final`` refuses otherwise). With the clean base known:
DEFAULT_WITH_BASE = "diff-kl"  # chosen on the 8 dev organisms, 2026-12-02 (docs/leaderboard.md)
#: Without it (the model's own activations only):
DEFAULT_OWN = "mahalanobis-gen"  # chosen on the 8 dev organisms, 2026-12-02


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise UsageError(f"unknown --method {name!r}: choose one of {', '.join(METHODS)}")
    return METHODS[name]


__all__ = [
    "DEFAULT_OWN",
    "DEFAULT_WITH_BASE",
    "METHODS",
    "Method",
    "PairSet",
    "Scorer",
    "get_method",
    "middle_layers",
]
