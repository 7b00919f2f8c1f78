"""Batched greedy generation (left-padded, as decoder-only generation requires)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from tripwire.models.chat import Rendered
from tripwire.models.loading import LocalModel


def generate(
    lm: LocalModel,
    prompts: Sequence[str | Rendered],
    max_new_tokens: int = 48,
    batch_size: int = 8,
) -> list[str]:
    """Greedy continuations of ``prompts`` (decoded, special tokens dropped)."""
    tok = lm.tokenizer
    texts = [p.text if isinstance(p, Rendered) else p for p in prompts]
    old_side = tok.padding_side
    tok.padding_side = "left"
    out: list[str] = []
    try:
        for b0 in range(0, len(texts), batch_size):
            chunk = texts[b0 : b0 + batch_size]
            enc = tok(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            enc = {k: v.to(lm.device) for k, v in enc.items()}
            with torch.inference_mode():
                ids = lm.model.generate(
                    **enc,
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=tok.pad_token_id,
                )
            new = ids[:, enc["input_ids"].shape[1] :]
            out.extend(tok.decode(row, skip_special_tokens=True) for row in new)
    finally:
        tok.padding_side = old_side
    return out


__all__ = ["generate"]
