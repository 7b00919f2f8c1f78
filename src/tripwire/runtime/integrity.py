"""Endpoint integrity: fingerprint an LLM monitor's endpoint with fixed canary prompts and alarm
when the distribution of its answers shifts (the model behind it was swapped or tampered with).

The test is the Model Equality Testing recipe (Gao et al., 2024): sample several answers per
canary, compare two samples with an unbiased MMD using a Hamming kernel on the answers'
characters, and calibrate by permutation (labels shuffled within each canary). A model served
at temperature > 0 answers each canary from a distribution; a different model, or the same one
fine-tuned or quantised enough to matter, answers from a different one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import numpy as np

from tripwire.errors import UsageError
from tripwire.runtime.monitors.llm import chat

CANARIES: tuple[str, ...] = (
    "What is the capital of France? Answer in one word.",
    "Name a prime number between 10 and 20.",
    "Complete the sequence: red, orange, yellow, ...",
    "Say a random English word.",
    "What colour is the sky on a clear day? One word.",
    "Give one synonym of 'quick'.",
    "Name a planet of the solar system.",
    "Write the number seven as a digit.",
)
WIDTH = 24


def sample_fingerprint(
    client: httpx.Client, model: str, per_prompt: int = 10, canaries: Sequence[str] = CANARIES
) -> list[list[str]]:
    """``per_prompt`` answers (temperature 1) to each canary."""
    out = []
    for prompt in canaries:
        msgs = [{"role": "user", "content": prompt}]
        out.append(
            [
                chat(client, model, msgs, temperature=1.0, max_tokens=16).strip()
                for _ in range(per_prompt)
            ]
        )
    return out


def _encode(answers: Sequence[str]) -> np.ndarray:
    arr = np.zeros((len(answers), WIDTH), dtype=np.int32)
    for i, a in enumerate(answers):
        codes = [ord(c) for c in a[:WIDTH]]
        arr[i, : len(codes)] = codes
    return arr


def _mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the Hamming kernel k(a, b) = fraction of equal positions."""

    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a[:, None, :] == b[None, :, :]).mean(axis=2)

    m, n = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2 * kxy.mean())


@dataclass(frozen=True)
class IntegrityResult:
    statistic: float
    p_value: float
    shifted: bool


def compare(
    reference: Sequence[Sequence[str]],
    current: Sequence[Sequence[str]],
    alpha: float = 0.01,
    permutations: int = 300,
    seed: int = 0,
) -> IntegrityResult:
    """Permutation test of "same answer distribution" over all canaries (mean MMD^2)."""
    if len(reference) != len(current) or not reference:
        raise UsageError("fingerprints must cover the same canaries")
    if any(len(r) < 2 or len(c) < 2 for r, c in zip(reference, current, strict=True)):
        raise UsageError("fingerprints need at least 2 answers per canary")
    rng = np.random.default_rng(seed)
    pairs = [(_encode(r), _encode(c)) for r, c in zip(reference, current, strict=True)]
    stat = float(np.mean([_mmd2(a, b) for a, b in pairs]))
    hits = 0
    for _ in range(permutations):
        vals = []
        for a, b in pairs:
            both = np.concatenate([a, b])
            idx = rng.permutation(len(both))
            vals.append(_mmd2(both[idx[: len(a)]], both[idx[len(a) :]]))
        hits += float(np.mean(vals)) >= stat
    p = (hits + 1) / (permutations + 1)
    return IntegrityResult(stat, p, p < alpha)


__all__ = ["CANARIES", "IntegrityResult", "compare", "sample_fingerprint"]
