"""Concept directions from contrastive passages, honestly evaluated, and traced token by token.

Passages are read as the mean residual over their tokens. Each concept gets a readout (a
logistic probe on standardised activations, the detector whose AUROC is reported) and a steering
direction per layer (the unit difference of means, the causal handle). The readout's layer is
chosen by cross-validation on the training pairs only; held-out pairs then give the reported
AUROC, its bootstrap CI and the best-of-N random-direction baseline at the same layer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from tripwire._io import atomic_path, write_json
from tripwire.errors import DataError, UsageError
from tripwire.models.chat import Rendered
from tripwire.models.loading import LocalModel
from tripwire.stats import auroc, auroc_ci
from tripwire.whitebox.capture import Activations, capture
from tripwire.whitebox.datasets import CONCEPTS, concept_pairs, neutral_prompts
from tripwire.whitebox.detectors import DiffMeans, LogisticProbe
from tripwire.whitebox.metrics import cv_auroc, random_direction_auroc


@dataclass
class ConceptVector:
    """One concept: a steering direction per layer and a linear readout at the chosen layer.

    ``directions`` are unit difference-of-means directions (the causal handle used for
    steering and export). The readout ``readout_w``/``readout_b`` is a logistic probe on
    standardised activations at ``layer`` folded into raw space (the detector that the
    reported AUROC measures). ``neutral_mean``/``neutral_std`` are the readout's statistics on
    neutral prompts; :meth:`zscore` uses them so traces of different concepts share one scale.
    """

    name: str
    layer: int
    directions: dict[int, np.ndarray]
    readout_w: np.ndarray
    readout_b: float = 0.0
    neutral_mean: float = 0.0
    neutral_std: float = 1.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def direction(self) -> np.ndarray:
        """The unit steering direction at the chosen layer."""
        return self.directions[self.layer]

    def score(self, X: np.ndarray) -> np.ndarray:
        """The readout at ``layer``: higher = more of the concept."""
        return np.asarray(X, dtype=np.float64) @ self.readout_w + self.readout_b

    def zscore(self, X: np.ndarray) -> np.ndarray:
        return (self.score(X) - self.neutral_mean) / (self.neutral_std or 1.0)

    def tensor(self, layer: int | None = None) -> torch.Tensor:
        return torch.from_numpy(self.directions[self.layer if layer is None else layer]).float()

    def save(self, path: str | Path) -> None:
        base = Path(path)
        arrays = {f"layer.{k}": v.astype(np.float32) for k, v in self.directions.items()}
        arrays["readout_w"] = self.readout_w.astype(np.float64)
        with atomic_path(base.with_suffix(".safetensors")) as tmp:
            save_file(arrays, str(tmp))
        write_json(
            base.with_suffix(".json"),
            {
                "name": self.name,
                "layer": self.layer,
                "readout_b": self.readout_b,
                "neutral_mean": self.neutral_mean,
                "neutral_std": self.neutral_std,
                "meta": self.meta,
            },
        )

    @classmethod
    def load(cls, path: str | Path) -> ConceptVector:
        base = Path(path)
        if (
            not base.with_suffix(".json").is_file()
            or not base.with_suffix(".safetensors").is_file()
        ):
            raise UsageError(f"no saved concept vector at {base} (.json + .safetensors)")
        try:
            meta = json.loads(base.with_suffix(".json").read_text(encoding="utf-8"))
            arrays = load_file(str(base.with_suffix(".safetensors")))
            readout = arrays.pop("readout_w")
            dirs = {int(k.split(".")[1]): v.astype(np.float64) for k, v in arrays.items()}
            return cls(
                name=meta["name"],
                layer=int(meta["layer"]),
                directions=dirs,
                readout_w=readout,
                readout_b=float(meta["readout_b"]),
                neutral_mean=float(meta["neutral_mean"]),
                neutral_std=float(meta["neutral_std"]),
                meta=meta.get("meta", {}),
            )
        except Exception as exc:  # json, safetensors, a missing key, a wrong type: one line
            first = (str(exc).splitlines() or [""])[0][:200]
            raise DataError(
                f"{base} is not a readable concept vector ({type(exc).__name__}: {first}); "
                "save it again with `tripwire concepts extract`"
            ) from None


@dataclass
class ConceptEval:
    """Held-out evaluation of one concept at its CV-chosen layer."""

    name: str
    best_layer: int
    auroc: float
    auroc_ci: tuple[float, float]
    random_baseline_auroc: float
    cv_auroc: float
    n_train_pairs: int
    n_test_pairs: int
    per_layer: list[dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["auroc_ci"] = list(self.auroc_ci)
        return d


def fit_concept(
    name: str,
    acts: Activations,
    y: np.ndarray,
    pair_ids: np.ndarray,
    test_mask: np.ndarray,
    folds: int = 4,
    n_random: int = 100,
    seed: int = 0,
) -> tuple[ConceptVector, ConceptEval]:
    """Fit a concept on the training rows of ``acts`` and evaluate it on the test rows.

    The readout's layer is chosen by pair-grouped cross-validation on the training rows only.
    """
    tr = ~test_mask
    cv = {
        layer: cv_auroc(acts[layer][tr], pair_ids[tr], y[tr], folds, seed, LogisticProbe)
        for layer in acts.layers
    }
    best = max(cv, key=lambda k: cv[k])
    directions, per_layer = {}, []
    for layer in acts.layers:
        X = acts[layer]
        directions[layer] = DiffMeans().fit(X[tr], y[tr]).unit_direction
        probe = LogisticProbe().fit(X[tr], y[tr])
        per_layer.append(
            {
                "layer": layer,
                "cv_auroc": cv[layer],
                "test_auroc": auroc(probe.score_samples(X[test_mask]), y[test_mask]),
            }
        )
    Xte, yte = acts[best][test_mask], y[test_mask]
    readout = LogisticProbe().fit(acts[best][tr], y[tr])
    scores = readout.score_samples(Xte)
    ev = ConceptEval(
        name=name,
        best_layer=best,
        auroc=auroc(scores, yte),
        auroc_ci=auroc_ci(scores, yte, seed=seed),
        random_baseline_auroc=random_direction_auroc(Xte, yte, n_random, seed),
        cv_auroc=cv[best],
        n_train_pairs=len(np.unique(pair_ids[tr])),
        n_test_pairs=len(np.unique(pair_ids[test_mask])),
        per_layer=per_layer,
    )
    vec = ConceptVector(
        name=name,
        layer=best,
        directions=directions,
        readout_w=np.asarray(readout.direction_, dtype=np.float64),
        readout_b=float(readout.bias_),
        meta={"readout": "logistic", "steering": "diffmeans"},
    )
    return vec, ev


def extract_concepts(
    lm: LocalModel,
    names: Sequence[str] | None = None,
    layers: Sequence[int] | None = None,
    test_pairs: int = 24,
    folds: int = 4,
    seed: int = 0,
    batch_size: int = 32,
    n_neutral: int = 64,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[tuple[ConceptVector, ConceptEval]]:
    """Extract and evaluate shipped concepts on ``lm``.

    Each passage is presented as a user message; the activation is the mean over its tokens.
    ``test_pairs`` pairs per concept are held out before anything is fitted.
    """
    chosen = list(CONCEPTS) if names is None else list(names)
    for name in chosen:
        if name not in CONCEPTS:
            raise UsageError(f"unknown concept {name!r}: choose from {', '.join(CONCEPTS)}")
    neutral = [lm.prompt(p) for p in neutral_prompts()[:n_neutral]]
    neutral_acts = capture(lm, neutral, layers=layers, positions="mean", batch_size=batch_size)
    results = []
    for k, name in enumerate(chosen):
        pairs = concept_pairs(name)
        if len(pairs) < test_pairs + folds * 2:
            raise UsageError(
                f"concept {name!r} has {len(pairs)} pairs; need > {test_pairs + folds * 2}"
            )
        texts: list[Rendered] = [lm.prompt(p.positive) for p in pairs] + [
            lm.prompt(p.negative) for p in pairs
        ]
        n = len(pairs)
        y = np.r_[np.ones(n), np.zeros(n)].astype(np.int64)
        pair_ids = np.r_[np.arange(n), np.arange(n)]
        held = set(np.random.default_rng(seed).permutation(n)[:test_pairs].tolist())
        test_mask = np.array([p in held for p in pair_ids])
        acts = capture(lm, texts, layers=layers, positions="mean", batch_size=batch_size)
        vec, ev = fit_concept(name, acts, y, pair_ids, test_mask, folds=folds, seed=seed)
        proj = vec.score(neutral_acts[vec.layer])
        vec.neutral_mean, vec.neutral_std = float(proj.mean()), float(proj.std() or 1.0)
        vec.meta.update({"model": lm.name, "positions": "mean", "auroc": ev.auroc})
        results.append((vec, ev))
        if progress is not None:
            progress(name, k + 1, len(chosen))
    return results


@dataclass
class TokenTrace:
    """Per-token z-scored projections of one text onto several concepts."""

    tokens: list[str]
    scores: dict[str, list[float]]
    n_prompt_tokens: int
    text: str


def trace(
    lm: LocalModel,
    vectors: Sequence[ConceptVector],
    prompt: Rendered,
    max_new_tokens: int = 0,
) -> TokenTrace:
    """Trace each concept's projection over the prompt and (optionally) a greedy continuation.

    The continuation is generated first; one forward pass then reads every token at each
    concept's layer, which equals reading the residual stream step by step during generation.
    """
    from tripwire.whitebox.generation import generate

    ids = lm.tokenizer(prompt.text, add_special_tokens=False)["input_ids"]
    text = prompt.text
    if max_new_tokens > 0:
        text = prompt.text + generate(lm, [prompt], max_new_tokens=max_new_tokens)[0]
    full_ids = lm.tokenizer(text, add_special_tokens=False)["input_ids"]
    layers = sorted({v.layer for v in vectors})
    acts = capture(lm, [Rendered(text)], layers=layers, mask=[[True] * len(full_ids)])
    scores = {v.name: v.zscore(acts[v.layer]).round(4).tolist() for v in vectors}
    tokens = [lm.tokenizer.decode([t]) for t in full_ids]
    return TokenTrace(tokens=tokens, scores=scores, n_prompt_tokens=len(ids), text=text)


__all__ = [
    "ConceptEval",
    "ConceptVector",
    "TokenTrace",
    "extract_concepts",
    "fit_concept",
    "trace",
]
