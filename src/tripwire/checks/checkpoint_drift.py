"""Checkpoint drift: how far fine-tuning moved a model along the shipped concept directions.

The external check on a model trained on data it helped write (Persona Vectors, Chen et al.
2025: the fine-tuning shift along a persona direction predicts the trait's expression after
training). Directions are fitted **once**, on the reference checkpoint (the first), and kept
fixed. Every checkpoint reads the same evaluation prompts; each prompt is the mean residual over
its own (user) text tokens at the concept's layer — the same reading the directions were fitted
on, and steadier than a single token. For each concept and checkpoint:

* ``drift_z`` = mean over prompts of (checkpoint projection − reference projection), in units of
  the reference's projection standard deviation over the prompts;
* a percentile bootstrap 95% CI over prompts (paired: a prompt's two readings move together);
* the control: the same ``|drift_z|`` along ``n_random`` random unit directions at that layer.
  Fine-tuning moves activations in every direction, so a concept's drift means something only
  against how far an arbitrary direction moved (its percentile among them and the random 95th
  percentile are reported beside it).

Per checkpoint and layer the overall shift is also reported: the length of the mean activation
change relative to the reference's spread (root of the summed per-dimension variances).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tripwire.errors import UsageError
from tripwire.models.chat import Rendered
from tripwire.models.loading import LocalModel
from tripwire.whitebox.capture import Positions, capture
from tripwire.whitebox.datasets import CONCEPTS, concept_pairs, neutral_prompts, pressure_pairs
from tripwire.whitebox.detectors import DiffMeans
from tripwire.whitebox.metrics import cv_auroc

#: Held-out positive passages per concept put into the evaluation set (never used for fitting).
EVAL_PASSAGES_PER_CONCEPT = 4
#: Neutral prompts taken from the end of the shipped list (safety training uses the start).
EVAL_NEUTRAL = 64

LAYER_RULE = (
    "among candidate layers at 1/4, 1/3 and 1/2 of the depth, the one whose difference "
    "of means best separates held-out pairs on the reference (4-fold CV split by pair; ties go "
    "to the layer nearest the middle)"
)


@dataclass
class ConceptDirection:
    """One concept's fixed unit direction at one layer, fitted on the reference checkpoint."""

    name: str
    layer: int
    vector: np.ndarray
    cv_auroc: float | None = None
    source: str = "fitted on the reference (difference of means)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "layer": self.layer,
            "cv_auroc": self.cv_auroc,
            "source": self.source,
        }


def candidate_layers(n_layers: int) -> list[int]:
    """Layers at about 1/4, 1/3 and 1/2 of the depth (distinct, in range). Concepts are
    usually clearest mid-network; stopping at the middle halves the cost of reading."""
    picks = {max(0, min(n_layers - 1, round(n_layers * f))) for f in (1 / 4, 1 / 3, 1 / 2)}
    return sorted(picks)


def check_concepts(names: Sequence[str] | None) -> list[str]:
    chosen = list(CONCEPTS) if names is None else list(names)
    if not chosen:
        raise UsageError("no concepts chosen; name at least one of " + ", ".join(CONCEPTS))
    for name in chosen:
        if name not in CONCEPTS:
            raise UsageError(f"unknown concept {name!r}: choose from {', '.join(CONCEPTS)}")
    return chosen


def fit_directions(
    lm: LocalModel,
    names: Sequence[str] | None = None,
    layers: Sequence[int] | None = None,
    n_pairs: int = 24,
    seed: int = 0,
    batch_size: int = 32,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, ConceptDirection]:
    """Unit difference-of-means directions of shipped concepts on ``lm`` (cheap, no readout).

    Uses up to ``n_pairs`` pairs per concept, never the :data:`EVAL_PASSAGES_PER_CONCEPT`
    passages that :func:`eval_prompts` holds out. The layer follows :data:`LAYER_RULE`.
    """
    chosen = check_concepts(names)
    cand = list(layers) if layers is not None else candidate_layers(lm.n_layers)
    middle = (lm.n_layers - 1) / 2
    out: dict[str, ConceptDirection] = {}
    for k, name in enumerate(chosen):
        pairs = concept_pairs(name)[EVAL_PASSAGES_PER_CONCEPT:]
        pairs = pairs[: max(8, n_pairs)]
        texts = [lm.prompt(p.positive) for p in pairs] + [lm.prompt(p.negative) for p in pairs]
        n = len(pairs)
        y = np.r_[np.ones(n), np.zeros(n)].astype(np.int64)
        ids = np.r_[np.arange(n), np.arange(n)]
        acts = capture(lm, texts, layers=cand, positions="mean", batch_size=batch_size)
        folds = 4 if n >= 8 else 2
        cv = {layer: cv_auroc(acts[layer], ids, y, folds, seed) for layer in acts.layers}
        best = max(acts.layers, key=lambda layer: (round(cv[layer], 3), -abs(layer - middle)))
        vec = DiffMeans().fit(acts[best], y).unit_direction
        out[name] = ConceptDirection(name, best, np.asarray(vec, dtype=np.float64), cv[best])
        if progress is not None:
            progress(name, k + 1, len(chosen))
    return out


def directions_from_vectors(vectors: dict[str, Any], source: str) -> dict[str, ConceptDirection]:
    """Wrap :class:`~tripwire.whitebox.concepts.ConceptVector` objects (their unit DoM at the
    readout's layer) as fixed drift directions."""
    return {
        name: ConceptDirection(
            name=name,
            layer=int(v.layer),
            vector=np.asarray(v.direction, dtype=np.float64),
            cv_auroc=None,
            source=source,
        )
        for name, v in vectors.items()
    }


def eval_prompts(limit: int | None = None) -> list[str]:
    """The fixed drift evaluation set, all shipped: the last :data:`EVAL_NEUTRAL` neutral
    prompts, the pressure prompts (impossible tasks, shutdown notices) and
    :data:`EVAL_PASSAGES_PER_CONCEPT` positive passages per concept (held out from fitting).

    ``limit`` caps the set, keeping the three parts in proportion (interleaved)."""
    neutral = neutral_prompts()[-EVAL_NEUTRAL:]
    pressure = [r["pressure"] for r in pressure_pairs()]
    passages = [
        p.positive for name in CONCEPTS for p in concept_pairs(name)[:EVAL_PASSAGES_PER_CONCEPT]
    ]
    if limit is None:
        return neutral + pressure + passages
    parts = [neutral, pressure, passages]
    total = sum(len(p) for p in parts)
    keep = max(4, min(limit, total))
    out: list[str] = []
    for part in parts:
        m = max(1, round(keep * len(part) / total))
        step = len(part) / m
        out.extend(part[int(i * step)] for i in range(m))
    return out


@dataclass
class ConceptDrift:
    """One concept on one checkpoint."""

    concept: str
    checkpoint: str
    layer: int
    drift_z: float
    ci: tuple[float, float]
    mean_shift: float
    reference_std: float
    random_abs_z_p95: float
    random_percentile: float
    beyond_random: bool
    cos_to_mean_shift: float


@dataclass
class OverallShift:
    """How far one checkpoint's activations moved at one layer, whatever the direction."""

    checkpoint: str
    layer: int
    relative_shift: float
    random_abs_z_median: float
    random_abs_z_p95: float


@dataclass
class DriftResult:
    """Everything ``tripwire drift`` reports (``to_dict`` is the OUT.json)."""

    reference: str
    checkpoints: list[str]
    positions: str
    n_prompts: int
    n_random: int
    n_boot: int
    layer_rule: str
    directions: list[ConceptDirection]
    drift: list[ConceptDrift]
    overall: list[OverallShift]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference": self.reference,
            "checkpoints": list(self.checkpoints),
            "positions": self.positions,
            "n_prompts": self.n_prompts,
            "n_random": self.n_random,
            "n_boot": self.n_boot,
            "layer_rule": self.layer_rule,
            "directions": [d.to_dict() for d in self.directions],
            "drift": [asdict(d) | {"ci": list(d.ci)} for d in self.drift],
            "overall": [asdict(o) for o in self.overall],
            "meta": self.meta,
        }

    def row(self, concept: str, checkpoint: str) -> ConceptDrift:
        for d in self.drift:
            if d.concept == concept and d.checkpoint == checkpoint:
                return d
        raise KeyError(f"no drift row for {concept!r} on {checkpoint!r}")


def read_checkpoint(
    lm: LocalModel,
    prompts: Sequence[str | Rendered],
    layers: Sequence[int],
    positions: Positions = "mean",
    batch_size: int = 16,
) -> dict[int, np.ndarray]:
    """One checkpoint's activations on the evaluation prompts: ``{layer: (n_prompts, d)}``."""
    rendered = [p if isinstance(p, Rendered) else lm.prompt(p) for p in prompts]
    acts = capture(
        lm, rendered, layers=sorted(set(layers)), positions=positions, batch_size=batch_size
    )
    return {layer: acts[layer].astype(np.float64) for layer in acts.layers}


def _z(diff: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Mean paired difference over the last axis, in units of the reference's std.

    ``diff``/``ref``: ``(..., n_prompts)``. A reference with zero spread gives 0 drift when
    nothing moved, and ±inf otherwise (the unit is undefined; flagged by the caller)."""
    sd = ref.std(axis=-1, ddof=1)
    mean = diff.mean(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(mean == 0, 0.0, mean / np.where(sd > 0, sd, 0.0))
    return np.asarray(z, dtype=np.float64)


def drift_from_activations(
    reference: dict[int, np.ndarray],
    checkpoints: dict[str, dict[int, np.ndarray]],
    directions: dict[str, ConceptDirection],
    reference_label: str = "reference",
    positions: str = "mean",
    n_random: int = 500,
    n_boot: int = 1000,
    seed: int = 0,
) -> DriftResult:
    """Drift of each checkpoint against ``reference`` along fixed ``directions``.

    Args:
        reference: the reference's activations per layer, ``(n_prompts, d)``.
        checkpoints: label -> activations per layer on the **same prompts in the same order**.
        directions: fixed unit directions (normally fitted on the reference).
        n_random: random unit directions per layer for the control.
        n_boot: bootstrap resamples of the prompts for the CI.
    """
    if not checkpoints:
        raise UsageError("drift needs at least one checkpoint besides the reference")
    layers = sorted({d.layer for d in directions.values()})
    n = None
    for label, acts in [(reference_label, reference), *checkpoints.items()]:
        for layer in layers:
            if layer not in acts:
                raise UsageError(f"{label}: layer {layer} was not read")
            if n is None:
                n = acts[layer].shape[0]
            if acts[layer].shape != reference[layer].shape:
                raise UsageError(
                    f"{label} read {acts[layer].shape} at layer {layer} but the reference read "
                    f"{reference[layer].shape}; checkpoints must share the width and prompts"
                )
    if n is None or n < 3:
        raise UsageError("drift needs at least 3 evaluation prompts")
    rng = np.random.default_rng(seed)
    d_model = reference[layers[0]].shape[1]
    rand = rng.standard_normal((d_model, n_random))
    rand /= np.linalg.norm(rand, axis=0, keepdims=True)
    boot = np.random.default_rng(seed + 1).integers(0, n, (n_boot, n))

    rows: list[ConceptDrift] = []
    overall: list[OverallShift] = []
    for label, acts in checkpoints.items():
        rand_abs: dict[int, np.ndarray] = {}
        for layer in layers:
            ref, ck = reference[layer], acts[layer]
            delta = ck - ref
            rz = np.abs(_z((delta @ rand).T, (ref @ rand).T))
            rand_abs[layer] = rz
            spread = float(np.sqrt(ref.var(axis=0, ddof=1).sum()))
            shift = float(np.linalg.norm(delta.mean(axis=0)))
            overall.append(
                OverallShift(
                    checkpoint=label,
                    layer=layer,
                    relative_shift=shift / spread if spread > 0 else float(shift > 0) * np.inf,
                    random_abs_z_median=float(np.median(rz)),
                    random_abs_z_p95=float(np.quantile(rz, 0.95)),
                )
            )
        for name, direc in directions.items():
            layer = direc.layer
            ref, ck = reference[layer], acts[layer]
            u = direc.vector / (np.linalg.norm(direc.vector) or 1.0)
            p_ref, p_ck = ref @ u, ck @ u
            diff = p_ck - p_ref
            z = float(_z(diff, p_ref))
            zb = _z(diff[boot], p_ref[boot])
            lo, hi = (float(v) for v in np.quantile(zb, [0.025, 0.975]))
            mean_delta = (ck - ref).mean(axis=0)
            norm = float(np.linalg.norm(mean_delta))
            rz = rand_abs[layer]
            rows.append(
                ConceptDrift(
                    concept=name,
                    checkpoint=label,
                    layer=layer,
                    drift_z=z,
                    ci=(lo, hi),
                    mean_shift=float(diff.mean()),
                    reference_std=float(p_ref.std(ddof=1)),
                    random_abs_z_p95=float(np.quantile(rz, 0.95)),
                    random_percentile=float(100.0 * (rz < abs(z)).mean()),
                    beyond_random=bool(abs(z) > np.quantile(rz, 0.95)),
                    cos_to_mean_shift=float(mean_delta @ u / norm) if norm > 0 else 0.0,
                )
            )
    return DriftResult(
        reference=reference_label,
        checkpoints=list(checkpoints),
        positions=positions,
        n_prompts=int(n),
        n_random=n_random,
        n_boot=n_boot,
        layer_rule=LAYER_RULE,
        directions=list(directions.values()),
        drift=rows,
        overall=overall,
    )


Checkpoint = LocalModel | Callable[[], LocalModel]
#: ``mapper(fn, jobs, labels) -> [fn(job) for job in jobs]``: serial by default, or
#: :class:`tripwire.scale.RayMap` (one Ray task per checkpoint).
Mapper = Callable[[Callable[[Any], Any], Sequence[Any], Sequence[str]], list[Any]]


@dataclass
class ReadJob:
    """Read one checkpoint on the evaluation prompts (picklable when ``checkpoint`` is a
    :class:`~tripwire.models.loading.ModelRef`, so it can run on a Ray worker)."""

    label: str
    checkpoint: Checkpoint
    prompts: list[Rendered]
    layers: list[int]
    positions: Positions = "mean"
    batch_size: int = 16


def read_job(job: ReadJob) -> dict[int, np.ndarray]:
    """Load the job's checkpoint, read it (:func:`read_checkpoint`) and release it."""
    ck = job.checkpoint
    lm = ck if isinstance(ck, LocalModel) else ck()
    return read_checkpoint(lm, job.prompts, job.layers, job.positions, job.batch_size)


def measure_drift(
    reference: tuple[str, Checkpoint],
    checkpoints: Sequence[tuple[str, Checkpoint]],
    names: Sequence[str] | None = None,
    directions: dict[str, ConceptDirection] | None = None,
    prompts: Sequence[str] | None = None,
    positions: Positions = "mean",
    n_random: int = 500,
    n_boot: int = 1000,
    seed: int = 0,
    batch_size: int = 16,
    progress: Callable[[str], None] | None = None,
    mapper: Mapper | None = None,
) -> DriftResult:
    """Fit directions on the reference (unless given), read every checkpoint, compare.

    Checkpoints may be given as loaders (``lambda: load_model(...)``): each is loaded, read and
    released in turn, so only two models are in memory at any time. ``mapper`` reads them
    elsewhere (``RayMap``: one Ray task per checkpoint, the loaders being ``ModelRef`` objects);
    the reference is read here and the comparison is the same either way.
    """
    say = progress or (lambda message: None)
    labels = [reference[0]] + [label for label, _ in checkpoints]
    if len(set(labels)) != len(labels):
        raise UsageError(f"checkpoint labels must be distinct, got {labels}")
    if directions is None:
        chosen = check_concepts(names)
    else:
        chosen = list(directions) if names is None else [n for n in names if n in directions]
        if not chosen:
            raise UsageError(f"none of {names} is among the given directions {list(directions)}")
    texts = list(prompts) if prompts is not None else eval_prompts()
    ref_lm = reference[1] if isinstance(reference[1], LocalModel) else reference[1]()
    if directions is None:
        say(f"fitting {len(chosen)} concept directions on {reference[0]}")
        directions = fit_directions(
            ref_lm,
            chosen,
            seed=seed,
            progress=lambda name, k, n: say(f"direction {k}/{n}: {name}"),
        )
    else:
        directions = {k: directions[k] for k in chosen}
    layers = sorted({d.layer for d in directions.values()})
    rendered = [ref_lm.prompt(t) for t in texts]
    say(f"reading {reference[0]} on {len(rendered)} prompts")
    ref_acts = read_checkpoint(ref_lm, rendered, layers, positions, batch_size)
    d_ref = ref_lm.d_model
    del ref_lm
    jobs = [
        ReadJob(label, ck, rendered, layers, positions, batch_size) for label, ck in checkpoints
    ]

    def serial(fn: Callable[[ReadJob], Any], todo: Sequence[ReadJob], _: Sequence[str]) -> list:
        out = []
        for job in todo:
            say(f"reading {job.label} on {len(rendered)} prompts")
            out.append(fn(job))
        return out

    read = (mapper or serial)(read_job, jobs, [job.label for job in jobs])
    acts: dict[str, dict[int, np.ndarray]] = {}
    for job, got in zip(jobs, read, strict=True):
        width = got[layers[0]].shape[1]
        if width != d_ref:
            raise UsageError(
                f"checkpoint {job.label} has width {width} but the reference has {d_ref}; "
                "drift compares checkpoints of one model"
            )
        acts[job.label] = got
    res = drift_from_activations(
        ref_acts,
        acts,
        directions,
        reference_label=reference[0],
        positions=positions,
        n_random=n_random,
        n_boot=n_boot,
        seed=seed,
    )
    res.meta["prompts"] = "shipped drift evaluation set" if prompts is None else "given"
    return res


__all__ = [
    "LAYER_RULE",
    "ConceptDirection",
    "ConceptDrift",
    "DriftResult",
    "OverallShift",
    "ReadJob",
    "candidate_layers",
    "check_concepts",
    "directions_from_vectors",
    "drift_from_activations",
    "eval_prompts",
    "fit_directions",
    "measure_drift",
    "read_checkpoint",
    "read_job",
]
