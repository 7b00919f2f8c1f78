"""What the defection detectors read: activations and divergences before anything reaches a user.

For every prompt, one forward pass of the model under test over the rendered prompt followed by
the first ``k`` tokens of its own greedy answer (teacher-forced), and, when the clean base model
is known, the same tokens through the base:

* ``last`` - the residual stream at every block at the **last prompt token** (before any output);
* ``gen`` - the residual stream at every block, averaged over the first ``k_read`` generated
  tokens (a guard that holds back the first few tokens can read them before the client does);
* ``kl`` - ``KL(model || base)`` of the next-token distribution at the last prompt token and at
  each of the first ``k - 1`` generated positions (output-level model diffing);
* ``llr`` - ``log p_model - log p_base`` of each of the model's own first ``k`` tokens;
* ``base_last`` / ``base_gen`` - the base's residuals at the same positions (activation diffing).

Arrays are float32 and are cached as safetensors, so the leaderboard recomputes in seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file, save_file

from tripwire._io import atomic_path
from tripwire.errors import UsageError
from tripwire.models.loading import LocalModel
from tripwire.whitebox.capture import block_output, forward_kwargs

K_GEN = 16  # generated tokens read for the divergences
K_READ = 8  # generated tokens averaged for ``gen``

_FIELDS = ("last", "gen", "base_last", "base_gen", "kl", "llr")


@dataclass
class Features:
    """Per-prompt features of one prompt set (rows in the order given)."""

    last: np.ndarray  # (n, n_layers, d_model)
    gen: np.ndarray  # (n, n_layers, d_model)
    base_last: np.ndarray | None = None
    base_gen: np.ndarray | None = None
    kl: np.ndarray | None = None  # (n, K_GEN)
    llr: np.ndarray | None = None  # (n, K_GEN), NaN past the end of a short answer
    n_gen: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def n(self) -> int:
        return int(self.last.shape[0])

    def take(self, idx: np.ndarray | Sequence[int]) -> Features:
        pick = np.asarray(idx)
        arrays: dict[str, Any] = {
            k: None if v is None else v[pick] for k, v in self._arrays().items()
        }
        return Features(**arrays)

    def _arrays(self) -> dict[str, np.ndarray | None]:
        return {k: getattr(self, k) for k in (*_FIELDS, "n_gen")}

    def save(self, path: str | Path) -> None:
        arrays = {k: np.ascontiguousarray(v) for k, v in self._arrays().items() if v is not None}
        with atomic_path(path) as tmp:
            save_file(arrays, str(tmp))

    @classmethod
    def load(cls, path: str | Path) -> Features:
        data = load_file(str(path))
        return cls(**{k: data.get(k) for k in (*_FIELDS, "n_gen")})  # type: ignore[arg-type]


@dataclass(frozen=True)
class Prompt:
    """A prompt to read: the user's message, an optional system prompt, the model's answer."""

    user: str
    system: str | None
    answer: str


def _sequences(lm: LocalModel, prompts: Sequence[Prompt], k: int) -> list[tuple[list[int], int]]:
    """Token ids of each rendered prompt + the first ``k`` answer tokens, and the prompt length."""
    out = []
    for p in prompts:
        text = lm.prompt(p.user, p.system).text
        ids = list(lm.tokenizer(text, add_special_tokens=False)["input_ids"])
        if not ids:
            raise UsageError("a prompt rendered to zero tokens")
        ans = list(lm.tokenizer(p.answer, add_special_tokens=False)["input_ids"])[:k]
        out.append((ids + ans, len(ids)))
    return out


def _forward(
    lm: LocalModel, rows: Sequence[tuple[list[int], int]], k_read: int
) -> tuple[np.ndarray, np.ndarray, torch.Tensor, list[int]]:
    """One padded batch through ``lm``: residuals at the last prompt token and averaged over the
    first ``k_read`` answer tokens at every block, and log-probabilities from the last prompt
    token on (``(B, K, vocab)``, positions past a row's end filled with zeros)."""
    width = max(len(ids) for ids, _ in rows)
    pad = lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None else 0
    ids_t = torch.full((len(rows), width), int(pad), dtype=torch.long)
    att = torch.zeros((len(rows), width), dtype=torch.long)
    for b, (ids, _) in enumerate(rows):
        ids_t[b, : len(ids)] = torch.tensor(ids)
        att[b, : len(ids)] = 1
    blocks = lm.blocks
    hidden: list[torch.Tensor] = [torch.empty(0)] * len(blocks)

    def hook_for(i: int) -> Callable[..., None]:
        def hook(module: object, args: object, output: object) -> None:
            hidden[i] = block_output(output).detach()

        return hook

    handles = [blk.register_forward_hook(hook_for(i)) for i, blk in enumerate(blocks)]
    try:
        with torch.inference_mode():
            kw = forward_kwargs(lm.model, ids_t.to(lm.device), att.to(lm.device))
            logits = lm.model(**kw).logits.float()
    finally:
        for handle in handles:
            handle.remove()
    n_layers, d = len(blocks), hidden[0].shape[-1]
    last = np.zeros((len(rows), n_layers, d), dtype=np.float32)
    gen = np.zeros_like(last)
    k_max = max(len(ids) - p for ids, p in rows) + 1
    logp = torch.zeros((len(rows), k_max, logits.shape[-1]))
    n_gen = []
    for b, (ids, p) in enumerate(rows):
        g = len(ids) - p
        n_gen.append(g)
        for i in range(n_layers):
            h = hidden[i][b].float().cpu()
            last[b, i] = h[p - 1].numpy()
            span = h[p : p + min(g, k_read)]
            gen[b, i] = (span.mean(0) if len(span) else h[p - 1]).numpy()
        logp[b, : g + 1] = torch.log_softmax(logits[b, p - 1 : p + g].cpu(), dim=-1)
    return last, gen, logp, n_gen


def extract(
    model: LocalModel,
    prompts: Sequence[Prompt],
    base: LocalModel | None = None,
    *,
    k: int = K_GEN,
    k_read: int = K_READ,
    batch_size: int = 8,
    progress: Callable[[int, int], None] | None = None,
) -> Features:
    """Read ``prompts`` through ``model`` (and ``base``, which must share its tokenizer)."""
    if not prompts:
        raise UsageError("no prompts to read")
    rows = _sequences(model, prompts, k)
    if base is not None and _sequences(base, prompts[:1], k) != rows[:1]:
        raise UsageError("the base model tokenises the prompts differently from the model")
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]))
    n = len(rows)
    L, d = model.n_layers, model.d_model
    last = np.zeros((n, L, d), np.float32)
    gen = np.zeros_like(last)
    b_last = np.zeros_like(last) if base is not None else None
    b_gen = np.zeros_like(last) if base is not None else None
    kl = np.zeros((n, k), np.float32) if base is not None else None
    llr = np.full((n, k), np.nan, np.float32) if base is not None else None
    n_gen = np.zeros(n, np.int64)
    for b0 in range(0, n, batch_size):
        idx = order[b0 : b0 + batch_size]
        chunk = [rows[i] for i in idx]
        m_last, m_gen, m_logp, g = _forward(model, chunk, k_read)
        last[idx], gen[idx], n_gen[idx] = m_last, m_gen, g
        if base is not None:
            assert b_last is not None and b_gen is not None and kl is not None and llr is not None
            x_last, x_gen, x_logp, _ = _forward(base, chunk, k_read)
            b_last[idx], b_gen[idx] = x_last, x_gen
            div = (m_logp.exp() * (m_logp - x_logp)).sum(-1).clamp(min=0.0)  # (B, K+1)
            for j, (i, (ids, p)) in enumerate(zip(idx, chunk, strict=True)):
                steps = min(k, len(ids) - p + 1)
                kl[i, :steps] = div[j, :steps].numpy()
                toks = torch.tensor(ids[p : p + k])
                if len(toks):
                    pos = torch.arange(len(toks))
                    llr[i, : len(toks)] = (m_logp[j, pos, toks] - x_logp[j, pos, toks]).numpy()
        if progress is not None:
            progress(min(b0 + batch_size, n), n)
    return Features(last, gen, b_last, b_gen, kl, llr, n_gen)


__all__ = ["K_GEN", "K_READ", "Features", "Prompt", "extract"]
