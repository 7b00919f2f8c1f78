"""Fit a probe on labelled contrast data and evaluate it with every control.

The shared recipe behind the defection and deception probes: split by pair, choose the layer
by cross-validation on the training split, fit, then score the held-out split, a neutral
control set (threshold at 1% FPR) and the held-out honest samples (their FPR there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tripwire.models.chat import Rendered
from tripwire.models.loading import LocalModel
from tripwire.stats import auroc
from tripwire.whitebox.capture import Activations, capture
from tripwire.whitebox.detectors import Detector, DiffMeans, LayerEnsemble, LogisticProbe
from tripwire.whitebox.generation import generate
from tripwire.whitebox.metrics import cv_auroc, evaluate_scores


@dataclass
class ProbeReport:
    """A probe's evaluation: best single layer (DiffMeans and logistic) and a layer ensemble."""

    name: str
    best_layer: int
    results: dict[str, dict[str, Any]]
    per_layer: list[dict[str, float]]
    n_train: int
    n_test: int
    n_control: int
    detector: Detector | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        main = self.results["diffmeans"]
        return {
            "name": self.name,
            "best_layer": self.best_layer,
            "auroc": main["auroc"],
            "auroc_ci": main["auroc_ci"],
            "random_baseline_auroc": main["random_baseline_auroc"],
            "recall_at_1pct_fpr": main["recall_at_1pct_fpr"],
            "honest_fpr": main["honest_fpr"],
            "detectors": self.results,
            "per_layer": self.per_layer,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "n_control": self.n_control,
        }


def neutral_control(
    lm: LocalModel, prompts: Sequence[str], max_new_tokens: int = 20
) -> list[Rendered]:
    """Neutral prompts with the model's own greedy answers, for reading response tokens."""
    from tripwire.models.chat import render_with_response

    rendered = [lm.prompt(p) for p in prompts]
    answers = generate(lm, rendered, max_new_tokens=max_new_tokens, batch_size=16)
    out = []
    for p, a in zip(prompts, answers, strict=True):
        a = a.strip() or "OK."
        msgs = [{"role": "user", "content": p}, {"role": "assistant", "content": a}]
        out.append(render_with_response(lm.tokenizer, msgs))
    return out


def fit_probe(
    name: str,
    acts: Activations,
    labels: np.ndarray,
    pair_ids: np.ndarray,
    test_mask: np.ndarray,
    control: Activations | None = None,
    folds: int = 4,
    seed: int = 0,
    ensemble_layers: Sequence[int] | None = None,
) -> ProbeReport:
    """Choose a layer by CV on the training split; evaluate on the held-out split."""
    y = np.asarray(labels)
    tr, te = ~test_mask, test_mask
    cv = {
        layer: cv_auroc(acts[layer][tr], pair_ids[tr], y[tr], folds, seed) for layer in acts.layers
    }
    best = max(cv, key=lambda k: cv[k])
    per_layer = []
    for layer in acts.layers:
        det = DiffMeans().fit(acts[layer][tr], y[tr])
        per_layer.append(
            {
                "layer": layer,
                "cv_auroc": cv[layer],
                "test_auroc": auroc(det.score_samples(acts[layer][te]), y[te]),
            }
        )

    def run(det: Detector, X: np.ndarray, Xc: np.ndarray | None) -> dict[str, Any]:
        det.fit(X[tr], y[tr])
        res = evaluate_scores(
            det.score_samples(X[te]),
            y[te],
            X[te],
            control_scores=None if Xc is None else det.score_samples(Xc),
            honest_scores=det.score_samples(X[te][y[te] == 0]),
            seed=seed,
        )
        return res.to_dict()

    Xc = None if control is None else control[best]
    main_det = DiffMeans()
    results = {
        "diffmeans": run(main_det, acts[best], Xc),
        "logistic": run(LogisticProbe(), acts[best], Xc),
    }
    ens = [layer for layer in (ensemble_layers or []) if layer in acts.layers]
    if len(ens) > 1:
        X = acts.stack(ens)
        Xce = None if control is None else control.stack(ens)
        results["ensemble"] = run(LayerEnsemble(n_layers=len(ens)), X, Xce)
        results["ensemble"]["layers"] = ens
    return ProbeReport(
        name=name,
        best_layer=best,
        results=results,
        per_layer=per_layer,
        n_train=int(tr.sum()),
        n_test=int(te.sum()),
        n_control=0 if control is None else control.n_samples,
        detector=main_det,
    )


def split_pairs(n_pairs: int, test_frac: float, seed: int) -> np.ndarray:
    """Indices of held-out pairs, drawn once before anything is fitted."""
    k = max(2, round(n_pairs * test_frac))
    return np.random.default_rng(seed).permutation(n_pairs)[:k]


def probe_on_dialogues(
    lm: LocalModel,
    name: str,
    texts: list[Rendered],
    labels: list[int],
    control: Activations | None,
    seed: int = 0,
    test_frac: float = 0.375,
) -> ProbeReport:
    """Capture the response tokens of paired dialogues (two per pair) and fit/evaluate."""
    acts = capture(lm, texts, positions="mean", batch_size=32)
    y = np.asarray(labels)
    pair_ids = np.arange(len(texts)) // 2
    held = set(split_pairs(len(texts) // 2, test_frac, seed).tolist())
    test_mask = np.array([p in held for p in pair_ids])
    n = lm.n_layers
    return fit_probe(
        name,
        acts,
        y,
        pair_ids,
        test_mask,
        control=control,
        seed=seed,
        ensemble_layers=list(range(n // 4, 3 * n // 4 + 1, max(1, n // 8))),
    )


__all__ = ["ProbeReport", "fit_probe", "neutral_control", "probe_on_dialogues", "split_pairs"]
