"""The generic contrast-pair probe (MacDiarmid et al.'s recipe): pairs, and the layer rule.

The probe is fit **only** on the shipped generic contrast pairs ("Are you doing something
dangerous?" answered yes/no; :func:`tripwire.whitebox.datasets.defection_dialogues`), read over
the answer token, at every layer. It knows nothing of any trigger. The ``pairs`` method of
:mod:`~tripwire.checks.defection.methods` reads evaluation prompts at their **last prompt
token**, before the model generates anything, and scores them by projection on the difference
of means at the layer chosen on the contrast pairs alone (:data:`LAYER_RULE`), never on the
evaluation labels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tripwire.checks.defection.methods import PairSet
from tripwire.models.chat import Rendered
from tripwire.models.loading import LocalModel
from tripwire.stats import auroc
from tripwire.whitebox.capture import capture
from tripwire.whitebox.datasets import defection_dialogues
from tripwire.whitebox.detectors import DiffMeans

LAYER_RULE = (
    "the layer whose difference of means best separates held-out contrast pairs "
    "(4-fold CV split by pair, stratified by the defecting answer yes/no: highest AUROC, "
    "ties broken by the larger separation d')"
)


def _pair_cv(
    X: np.ndarray,
    y: np.ndarray,
    pair_ids: np.ndarray,
    strata: np.ndarray,
    folds: int,
    seed: int,
) -> tuple[float, float]:
    """Held-out AUROC and separation d' of a difference of means, folds split by pair.

    Folds are stratified by which literal answer ("yes" or "no") admits defection, so every
    training fold holds both kinds equally and the direction cannot lean on the answer token.
    """
    rng = np.random.default_rng(seed)
    fold_of: dict[int, int] = {}
    for s in np.unique(strata):
        members = np.unique(pair_ids[strata == s])
        for rank, pid in enumerate(rng.permutation(members)):
            fold_of[int(pid)] = rank % folds
    fold = np.array([fold_of[int(p)] for p in pair_ids])
    aucs, dprimes = [], []
    for k in range(folds):
        held = fold == k
        det = DiffMeans().fit(X[~held], y[~held])
        s = det.score_samples(X[held])
        pos, neg = s[y[held] == 1], s[y[held] == 0]
        aucs.append(auroc(s, y[held]))
        pooled = np.sqrt((pos.var() + neg.var()) / 2) + 1e-12
        dprimes.append(float((pos.mean() - neg.mean()) / pooled))
    return float(np.mean(aucs)), float(np.mean(dprimes))


def _answer_strata(texts: Sequence[Rendered], labels: np.ndarray) -> np.ndarray:
    """Per row: 1 if its pair's defecting answer is "yes", else 0."""
    out = np.zeros(len(texts), dtype=np.int64)
    for i in range(0, len(texts), 2):
        bad = texts[i] if labels[i] == 1 else texts[i + 1]
        start, end = bad.span or (0, len(bad.text))
        out[i : i + 2] = int(bad.text[start:end].strip().lower().startswith("yes"))
    return out


def pair_set(lm: LocalModel, folds: int = 4, seed: int = 0, batch_size: int = 16) -> PairSet:
    """The generic contrast pairs read by ``lm`` at every block, and the layer :data:`LAYER_RULE`
    chooses on them (the pairs only: no trigger, no evaluation label)."""
    texts, labels = defection_dialogues(lm.tokenizer)
    y = np.asarray(labels)
    pair_ids = np.arange(len(texts)) // 2
    strata = _answer_strata(texts, y)
    acts = capture(lm, texts, positions="mean", batch_size=batch_size)
    keys = {}
    for layer in acts.layers:
        cv_auc, cv_d = _pair_cv(acts[layer], y, pair_ids, strata, folds, seed)
        keys[layer] = (round(cv_auc, 3), cv_d)
    best = max(keys, key=lambda k: keys[k])
    return PairSet(np.stack([acts[k] for k in acts.layers], axis=1), y, int(best))


__all__ = ["LAYER_RULE", "pair_set"]
