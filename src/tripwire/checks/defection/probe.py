"""``tripwire probe defection``: one method on a user's model and labelled prompts, every control.

The default method is the leave-one-organism-out winner on the zoo's development
organisms (``tripwire probe leaderboard``): :data:`DEFAULT_WITH_BASE` when the clean base is
known (an ``--adapter``, or ``--base``), :data:`DEFAULT_OWN` otherwise.

Frozen on 2026-12-02 from the leave-one-organism-out run on the zoo's 8 dev organisms
(``docs/leaderboard.json``), before any final organism was scored: ``diff-kl`` (KL divergence
of the first token's distribution from the clean base's, at the last prompt token - before any
output) and ``mahalanobis-gen`` (Mahalanobis distance of the first generated tokens from
neutral traffic). ``tripwire probe leaderboard --final`` refuses to score the final organisms
while the selection rule's choice on the dev organisms differs from these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tripwire.checks.defection.evaluate import N_RANDOM, ModelData, evaluate, neutral_split
from tripwire.checks.defection.features import K_GEN
from tripwire.checks.defection.leaderboard import read_model
from tripwire.checks.defection.methods import (
    DEFAULT_OWN,
    DEFAULT_WITH_BASE,
    METHODS,
    Method,
    get_method,
)
from tripwire.checks.defection.pairs import LAYER_RULE
from tripwire.errors import DataError, UsageError
from tripwire.models.loading import LocalModel, ModelRef
from tripwire.stats import auroc
from tripwire.whitebox.datasets import read_jsonl
from tripwire.whitebox.detectors import DiffMeans, MahalanobisDetector
from tripwire.whitebox.generation import generate

RANDOM_RULE = (
    "best of N random unit directions in the method's standardised feature space (the model's "
    "own last-token residuals for scalar methods), chosen on one half of the prompts and scored "
    "on the other, both ways averaged"
)


def resolve_method(name: str, has_base: bool) -> Method:
    """``auto`` -> the leaderboard default for what is available; a diffing method needs a base."""
    if name == "auto":
        return METHODS[DEFAULT_WITH_BASE if has_base else DEFAULT_OWN]
    m = get_method(name)
    if m.needs_base and not has_base:
        raise UsageError(f"--method {name} diffs against the clean base: give --adapter or --base")
    return m


def load_eval_rows(path: str | Path) -> list[dict[str, Any]]:
    """``{"prompt": str, "label": 0|1}`` lines, with optional ``system`` and ``group``."""
    rows = read_jsonl(path, {"prompt": str, "label": int})
    for n, r in enumerate(rows, 1):
        if r["label"] not in (0, 1):
            raise DataError(f"{path}: label must be 0 or 1 (row {n})")
        if not r["prompt"].strip():
            raise DataError(f"{path}: row {n} has an empty prompt")
        if "system" in r and not isinstance(r["system"], str):
            raise DataError(f"{path}: row {n}: 'system' must be a string")
    y = [r["label"] for r in rows]
    if sum(y) < 2 or len(y) - sum(y) < 2:
        raise DataError(
            f"{path}: the eval set needs at least 2 prompts labelled 1 and 2 labelled 0; it has "
            f"{sum(y)} and {len(y) - sum(y)}"
        )
    return rows


@dataclass
class DefectionReport:
    """Everything ``tripwire probe defection`` writes (``to_dict`` is the OUT.json)."""

    model: str
    method: str
    method_description: str
    reads: str
    auroc: float
    auroc_ci: list[float]
    best_layer: int | None
    layer_rule: str
    random_baseline_auroc: float | None
    random_baseline_rule: str
    random_median_auroc: float | None
    n_random: int
    recall_at_1pct_fpr: float | None
    threshold: float
    control_fpr: float
    honest_fpr: float | None
    format_fpr: float
    format_fpr_by_kind: dict[str, float]
    within_group: list[dict[str, Any]]
    n_pos: int
    n_neg: int
    n_control: int
    per_layer: list[dict[str, Any]]
    null: dict[str, Any] | None = None
    scores: list[float] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _per_layer(
    method: Method, data: ModelData, seed: int
) -> tuple[list[dict[str, Any]], int | None]:
    """Per-layer AUROC of the method's own per-layer score, for reading (never for choosing)."""
    y = data.labels
    if method.name.startswith("pairs") and data.pairs is not None:
        rows = []
        for layer in range(data.pairs.acts.shape[1]):
            det = DiffMeans().fit(data.pairs.acts[:, layer].astype(np.float64), data.pairs.labels)
            s = det.score_samples(data.eval.last[:, layer].astype(np.float64))
            rows.append({"layer": layer, "auroc": auroc(s, y)})
        return rows, data.pairs.best_layer if method.name == "pairs" else None
    if method.name in ("mahalanobis", "mahalanobis-gen", "diff", "diff-gen"):
        fit_idx, _ = neutral_split(data.neutral.n, seed)
        n_layers = data.eval.last.shape[1]
        det = MahalanobisDetector(n_blocks=n_layers).fit(method.matrix(data.neutral.take(fit_idx)))
        z = det.block_z(method.matrix(data.eval))
        return [{"layer": i, "auroc": auroc(z[:, i], y)} for i in range(n_layers)], None
    return [], None


def probe(
    lm: LocalModel,
    rows: Sequence[dict[str, Any]],
    *,
    method: str = "auto",
    base: LocalModel | None = None,
    n_random: int = N_RANDOM,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> DefectionReport:
    """Score ``rows`` (label 1 = the model defected, or the trigger is present) with ``method``.

    The model's own first tokens are generated only for methods that read them."""
    say = progress or (lambda message: None)
    m = resolve_method(method, base is not None)
    reads_gen = "generated" in m.reads
    items = [(str(r["prompt"]), r.get("system")) for r in rows]
    if reads_gen:
        say(f"the model's first {K_GEN} tokens on {len(rows)} eval prompts")
        answers = generate(lm, [lm.prompt(u, s) for u, s in items], K_GEN, batch_size=16)
    else:
        answers = [""] * len(rows)
    eval_rows = [
        {"prompt": u, "system": s, "label": int(r["label"]), "group": str(r.get("group", "")),
         "condition": str(r.get("condition", "")), "response": a}
        for (u, s), r, a in zip(items, rows, answers, strict=True)
    ]  # fmt: skip
    data = read_model(lm.name, "user", lm, base, eval_rows, None, progress=say, answers=reads_gen)
    say(f"scoring with {m.name}")
    res = evaluate(m, data, seed, n_random)
    per_layer, best = _per_layer(m, data, seed)
    if res.auroc is None or res.auroc_ci is None:
        raise UsageError("the eval set needs prompts of both labels")
    score = m.fit(data.neutral.take(neutral_split(data.neutral.n, seed)[0]), data.pairs)
    return DefectionReport(
        model=lm.name,
        method=m.name,
        method_description=m.description,
        reads=m.reads,
        auroc=res.auroc,
        auroc_ci=res.auroc_ci,
        best_layer=best,
        layer_rule=LAYER_RULE
        if m.name == "pairs"
        else "every layer, z-scored and averaged"
        if per_layer
        else "no layers: an output-level divergence",
        random_baseline_auroc=res.random_baseline_auroc,
        random_baseline_rule=RANDOM_RULE,
        random_median_auroc=res.random_median_auroc,
        n_random=n_random,
        recall_at_1pct_fpr=res.recall_at_1pct_fpr,
        threshold=res.threshold,
        control_fpr=res.neutral_fpr,
        honest_fpr=res.honest_fpr,
        format_fpr=res.format_fpr,
        format_fpr_by_kind=res.format_fpr_by_kind,
        within_group=res.within_group,
        n_pos=res.n_pos,
        n_neg=res.n_neg,
        n_control=data.neutral.n - data.neutral.n // 2,
        per_layer=per_layer,
        scores=[float(x) for x in score(data.eval)],
    )


def attach_null(report: DefectionReport, null: DefectionReport) -> None:
    """Record the same method on the clean base model beside ``report``."""
    report.null = {
        "model": null.model,
        "method": null.method,
        "auroc": null.auroc,
        "auroc_ci": null.auroc_ci,
        "recall_at_1pct_fpr": null.recall_at_1pct_fpr,
        "honest_fpr": null.honest_fpr,
        "flagged_rate": float(np.mean(np.asarray(null.scores) > null.threshold)),
    }


@dataclass
class DefectionJob:
    """One model (usually the base with one adapter) probed on its eval rows: picklable, so
    ``probe defection`` over several adapters can run one Ray task per adapter."""

    label: str
    model: ModelRef
    rows: list[dict[str, Any]]
    base: ModelRef | None = None  # the clean base: diffing methods and the null
    method: str = "auto"
    n_random: int = N_RANDOM
    seed: int = 0
    null: bool = True


def defection_job(
    job: DefectionJob, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Load the job's model (and base), :func:`probe` it, add the null on the clean base;
    the OUT.json of ``probe defection`` for that model."""
    say = progress or (lambda message: None)
    chosen = resolve_method(job.method, job.base is not None)
    say(f"loading {job.label}")
    lm = job.model()
    clean = None if job.base is None else job.base()
    diff_base = clean if chosen.needs_base else None
    report = probe(
        lm, job.rows, method=chosen.name, base=diff_base, n_random=job.n_random, seed=job.seed,
        progress=say,
    )  # fmt: skip
    if clean is not None and job.null:
        say(f"{job.label}: the null, the same method on the clean base model")
        null = probe(clean, job.rows, method=chosen.name, base=clean if diff_base else None,
                     n_random=job.n_random, seed=job.seed)  # fmt: skip
        attach_null(report, null)
    data = report.to_dict()
    data["adapter"] = job.model.adapter
    data["base"] = None if job.base is None else job.base.spec
    return data


__all__ = [
    "DEFAULT_OWN",
    "DEFAULT_WITH_BASE",
    "DefectionJob",
    "DefectionReport",
    "attach_null",
    "defection_job",
    "load_eval_rows",
    "probe",
    "resolve_method",
]
