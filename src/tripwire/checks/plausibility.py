"""Event plausibility probes (after Lepori et al., ICLR 2026, "modal difference vectors").

124 shipped event frames, each written three ways that differ in one or two words: plausible
("stirred her tea with a spoon"), improbable ("... with a pencil") and impossible ("... with a
cloud"). A difference of means is fit for each pair of categories on the training frames and
scored on held-out frames; the text-only baseline is the model's own mean token log-probability
of the sentence (the paper's point is that the representation separates the categories better
than sentence probability does). A multinomial logistic regression gives 3-way accuracy.

Every split keeps a frame's three versions on one side. The reported layer is chosen by
cross-validation on the training frames only (:data:`LAYER_RULE`); the per-layer test figures
are all reported beside it, each with its best-of-N random-direction baseline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tripwire.checks._common import CV_LAYER_RULE, data_file, limit_rows
from tripwire.errors import UsageError
from tripwire.models.loading import LocalModel
from tripwire.stats import auroc, auroc_ci, wilson
from tripwire.whitebox.capture import Activations, capture, forward_kwargs
from tripwire.whitebox.datasets import read_jsonl
from tripwire.whitebox.detectors import DiffMeans, LogisticProbe
from tripwire.whitebox.metrics import cv_auroc, random_direction_auroc

CATEGORIES = ("plausible", "improbable", "impossible")
#: The three pairwise problems; label 1 is the second (less plausible) category.
PAIRS = (("plausible", "improbable"), ("improbable", "impossible"), ("plausible", "impossible"))
LAYER_RULE = CV_LAYER_RULE


def _pair_name(pair: tuple[str, str]) -> str:
    return f"{pair[0]}_vs_{pair[1]}"


def plausibility_frames() -> list[dict[str, str]]:
    """The shipped event frames: ``{"id", "topic", "plausible", "improbable", "impossible"}``."""
    rows = read_jsonl(
        data_file("plausibility.jsonl"),
        {"id": str, "topic": str, "plausible": str, "improbable": str, "impossible": str},
    )
    return [{k: str(r[k]) for k in ("id", "topic", *CATEGORIES)} for r in rows]


def frame_split(n_frames: int, test_fraction: float = 0.25, seed: int = 0) -> np.ndarray:
    """Boolean mask over frames: True = test. A frame's three versions share its side."""
    if n_frames < 8:
        raise UsageError(f"the plausibility probe needs at least 8 frames, got {n_frames}")
    n_test = max(2, round(n_frames * test_fraction))
    test = np.zeros(n_frames, dtype=bool)
    test[np.random.default_rng(seed).permutation(n_frames)[:n_test]] = True
    return test


def sentence_logprob(lm: LocalModel, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
    """Mean log-probability per token the model gives each text (tokens after the first)."""
    import torch

    tok = lm.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = [list(tok(t, add_special_tokens=True)["input_ids"]) for t in texts]
    if any(len(x) < 2 for x in ids):
        raise UsageError("sentence log-probability needs texts of at least two tokens")
    out = np.zeros(len(texts), dtype=np.float64)
    for b0 in range(0, len(ids), batch_size):
        chunk = ids[b0 : b0 + batch_size]
        width = max(len(x) for x in chunk)
        inp = torch.full((len(chunk), width), int(pad), dtype=torch.long)
        att = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, x in enumerate(chunk):
            inp[i, : len(x)] = torch.tensor(x)
            att[i, : len(x)] = 1
        inp, att = inp.to(lm.device), att.to(lm.device)
        with torch.inference_mode():
            logits = lm.model(**forward_kwargs(lm.model, inp, att)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        tgt = logp.gather(-1, inp[:, 1:, None])[..., 0]
        m = att[:, 1:].float()
        out[b0 : b0 + len(chunk)] = ((tgt * m).sum(1) / m.sum(1)).cpu().numpy()
    return out


@dataclass
class PlausibilityResult:
    """Everything ``tripwire probe plausibility`` reports (``to_dict`` is the JSON)."""

    model: str
    chosen_layer: int
    layer_rule: str
    position: str
    n_frames: int
    n_train_frames: int
    n_test_frames: int
    n_random: int
    per_layer: list[dict[str, Any]]
    pairs: dict[str, dict[str, Any]]
    three_way: dict[str, Any]
    baselines: dict[str, Any]
    test_frames: list[str] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _paired_accuracy(scores: np.ndarray, frame_of: np.ndarray, y: np.ndarray) -> float:
    """Share of frames whose less plausible version scores above its partner."""
    wins = []
    for f in np.unique(frame_of):
        s = scores[frame_of == f]
        lab = y[frame_of == f]
        wins.append(float(s[lab == 1][0] > s[lab == 0][0]))
    return float(np.mean(wins))


def _three_way(
    Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, yte: np.ndarray, C: float
) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    clf.fit(Xtr, ytr)
    return float((clf.predict(Xte) == yte).mean())


def score_plausibility(
    acts: Activations,
    logprob: np.ndarray,
    n_frames: int,
    test_mask: np.ndarray,
    *,
    model: str = "",
    frame_ids: Sequence[str] | None = None,
    n_random: int = 100,
    folds: int = 4,
    seed: int = 0,
    logistic: bool = True,
) -> PlausibilityResult:
    """Score captured activations; rows are ``frame * 3 + category`` (order of :data:`CATEGORIES`).

    Args:
        acts: one row per sentence, ``3 * n_frames`` rows.
        logprob: the text-only scorer per sentence (higher = the model finds it more likely).
        test_mask: per frame, True = held out.
    """
    if acts.n_samples != 3 * n_frames or len(logprob) != 3 * n_frames:
        raise UsageError("plausibility scoring needs three rows per frame")
    test_mask = np.asarray(test_mask, dtype=bool)
    frame = np.repeat(np.arange(n_frames), 3)
    cat = np.tile(np.arange(3), n_frames)
    is_test = test_mask[frame]
    lp = np.asarray(logprob, dtype=np.float64)
    per_layer: list[dict[str, Any]] = []
    cv_key: dict[int, float] = {}
    for layer in acts.layers:
        X = acts[layer].astype(np.float64)
        row: dict[str, Any] = {"layer": layer}
        cvs, aucs, rands = [], [], []
        for pair in PAIRS:
            a, b = CATEGORIES.index(pair[0]), CATEGORIES.index(pair[1])
            sel = (cat == a) | (cat == b)
            y = (cat == b).astype(np.int64)
            tr, te = sel & ~is_test, sel & is_test
            dm = DiffMeans().fit(X[tr], y[tr])
            auc = auroc(dm.score_samples(X[te]), y[te])
            rnd = random_direction_auroc(X[te], y[te], n_random, seed)
            cv = cv_auroc(X[tr], frame[tr], y[tr], folds, seed)
            row[_pair_name(pair)] = {
                "auroc": auc,
                "logistic_auroc": (
                    auroc(LogisticProbe().fit(X[tr], y[tr]).score_samples(X[te]), y[te])
                    if logistic
                    else None
                ),
                "random_baseline_auroc": rnd,
                "cv_auroc": cv,
            }
            aucs.append(auc)
            rands.append(rnd)
            cvs.append(cv)
        row["auroc"] = float(np.mean(aucs))
        row["random_baseline_auroc"] = float(np.mean(rands))
        row["cv_auroc"] = float(np.mean(cvs))
        cv_key[layer] = row["cv_auroc"]
        per_layer.append(row)
    best = max(acts.layers, key=lambda k: (round(cv_key[k], 4), -k))
    X = acts[best].astype(np.float64)
    pairs: dict[str, dict[str, Any]] = {}
    logprob_pairs: dict[str, dict[str, Any]] = {}
    for pair in PAIRS:
        a, b = CATEGORIES.index(pair[0]), CATEGORIES.index(pair[1])
        sel = (cat == a) | (cat == b)
        y = (cat == b).astype(np.int64)
        tr, te = sel & ~is_test, sel & is_test
        s = DiffMeans().fit(X[tr], y[tr]).score_samples(X[te])
        at = next(r for r in per_layer if r["layer"] == best)[_pair_name(pair)]
        text = -lp[te]  # less likely text = less plausible
        pairs[_pair_name(pair)] = {
            "auroc": at["auroc"],
            "auroc_ci": list(auroc_ci(s, y[te], seed=seed)),
            "logistic_auroc": at["logistic_auroc"],
            "random_baseline_auroc": at["random_baseline_auroc"],
            "paired_accuracy": _paired_accuracy(s, frame[te], y[te]),
            "logprob_auroc": auroc(text, y[te]),
            "logprob_auroc_ci": list(auroc_ci(text, y[te], seed=seed)),
            "logprob_paired_accuracy": _paired_accuracy(text, frame[te], y[te]),
            "n_test": int(te.sum()),
        }
        logprob_pairs[_pair_name(pair)] = {
            "auroc": pairs[_pair_name(pair)]["logprob_auroc"],
            "auroc_ci": pairs[_pair_name(pair)]["logprob_auroc_ci"],
            "paired_accuracy": pairs[_pair_name(pair)]["logprob_paired_accuracy"],
        }
    n3 = int(is_test.sum())
    acc = _three_way(X[~is_test], cat[~is_test], X[is_test], cat[is_test], C=0.1)
    acc_lp = _three_way(lp[~is_test, None], cat[~is_test], lp[is_test, None], cat[is_test], C=1.0)
    three_way = {
        "accuracy": acc,
        "accuracy_ci": list(wilson(round(acc * n3), n3)),
        "logprob_accuracy": acc_lp,
        "logprob_accuracy_ci": list(wilson(round(acc_lp * n3), n3)),
        "chance": 1 / 3,
        "n_test": n3,
        "classifier": "multinomial logistic regression on standardised activations (C=0.1)",
    }
    ids = list(frame_ids) if frame_ids is not None else [str(i) for i in range(n_frames)]
    return PlausibilityResult(
        model=model,
        chosen_layer=best,
        layer_rule=LAYER_RULE,
        position=acts.positions,
        n_frames=n_frames,
        n_train_frames=int((~test_mask).sum()),
        n_test_frames=int(test_mask.sum()),
        n_random=n_random,
        per_layer=per_layer,
        pairs=pairs,
        three_way=three_way,
        baselines={
            "logprob": {
                "description": "the model's mean token log-probability of the sentence "
                "(lower = less plausible), no training",
                "pairs": logprob_pairs,
                "three_way_accuracy": acc_lp,
            },
            "random": f"best of {n_random} random unit directions on the test rows, per layer",
        },
        test_frames=[ids[i] for i in np.flatnonzero(test_mask)],
    )


def probe_plausibility(
    lm: LocalModel,
    *,
    layers: Sequence[int] | None = None,
    limit: int | None = None,
    n_random: int = 100,
    seed: int = 0,
    logistic: bool = True,
    batch_size: int = 16,
    progress: Callable[[str], None] | None = None,
) -> PlausibilityResult:
    """Fit plausibility probes at every layer of ``lm`` on the shipped frames.

    Args:
        layers: block indices (default: every block).
        limit: use a seeded subset of this many frames (at least 8).
        n_random: random directions in the best-of-N baseline.
        logistic: also fit a logistic probe per layer and pair (slower; reported beside).
    """
    say = progress or (lambda message: None)
    frames = limit_rows(plausibility_frames(), limit, seed)
    test_mask = frame_split(len(frames), seed=seed)
    texts = [f[c] for f in frames for c in CATEGORIES]
    say(f"plausibility: {len(frames)} frames x 3 versions (last token)")
    acts = capture(
        lm,
        texts,
        layers=None if layers is None else list(layers),
        positions="last",
        batch_size=batch_size,
    )
    say("plausibility: sentence log-probabilities (text-only baseline)")
    lp = sentence_logprob(lm, texts, batch_size=batch_size)
    say("plausibility: scoring every layer")
    return score_plausibility(
        acts,
        lp,
        len(frames),
        test_mask,
        model=lm.name,
        frame_ids=[f["id"] for f in frames],
        n_random=n_random,
        seed=seed,
        logistic=logistic,
    )


__all__ = [
    "CATEGORIES",
    "LAYER_RULE",
    "PAIRS",
    "PlausibilityResult",
    "frame_split",
    "plausibility_frames",
    "probe_plausibility",
    "score_plausibility",
    "sentence_logprob",
]
