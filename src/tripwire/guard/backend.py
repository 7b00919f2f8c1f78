"""The model behind the guard: one forward pass fills the KV cache *and* hands back the residuals.

:class:`GuardBackend` is the small interface the generation loop needs (so a vLLM backend can
follow): ``prefill`` runs the prompts once, returning next-token logits, the residual stream at
the requested layers at the last prompt token, and an opaque decode state holding the KV cache;
``step`` feeds one token per row and returns the same for that token; ``select`` keeps, repeats
or reorders rows of the state (``n`` choices share one prefill; finished rows are dropped).

:class:`TransformersBackend` implements it on a Hugging Face causal LM with forward hooks on the
decoder blocks (never module replacement, never ``output_hidden_states``). Prompts are
left-padded, so the last position is every row's last real token, and position ids follow the
attention mask, so a padded row computes what it computes alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import torch

from tripwire.errors import UsageError
from tripwire.models.loading import LocalModel
from tripwire.whitebox.capture import block_output


class Readout(NamedTuple):
    """What one forward pass gives the loop: next-token logits and the residuals it read."""

    logits: torch.Tensor  # (rows, vocab) float32, for the last position of every row
    residuals: dict[int, torch.Tensor]  # layer -> (rows, d_model) float32, last position
    # the clean base's logits at the last prompt token (prefill only, set by the engine)
    base_logits: torch.Tensor | None = None


class GuardBackend(Protocol):
    """The operations the guard's generation loop needs from a model."""

    layers: list[int]

    @property
    def context_length(self) -> int: ...

    @property
    def eos_ids(self) -> frozenset[int]: ...

    def prefill(self, prompts: Sequence[Sequence[int]]) -> tuple[Any, Readout]:
        """One forward pass over the prompts: (decode state with the KV cache, readout)."""
        ...

    def step(self, state: Any, tokens: torch.Tensor) -> Readout:
        """Feed one token per row (``tokens``: (rows,)) and read it."""
        ...

    def select(self, state: Any, rows: torch.Tensor) -> None:
        """Keep the state's rows ``rows`` (indices may repeat), in that order."""
        ...


@dataclass
class _State:
    cache: Any
    attention_mask: torch.Tensor  # (rows, seen) long
    positions: torch.Tensor  # (rows,) position id of the next token


def _accepts(model: Any, name: str) -> bool:
    import inspect

    try:
        return name in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _eos_ids(lm: LocalModel) -> frozenset[int]:
    ids: set[int] = set()
    for source in (getattr(lm.model, "generation_config", None), lm.model.config, lm.tokenizer):
        value = getattr(source, "eos_token_id", None)
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list | tuple):
            ids.update(int(v) for v in value if isinstance(v, int))
    return frozenset(ids)


class TransformersBackend:
    """:class:`GuardBackend` on a transformers causal LM (CPU or CUDA), reading ``layers``.

    Args:
        lm: the loaded model.
        layers: decoder block indices whose output residual is read at every forward.

    The clean base of a diffing detector is a second instance (no layers), run by the engine.
    """

    def __init__(self, lm: LocalModel, layers: Sequence[int] = ()) -> None:
        self.lm = lm
        self.layers = sorted(set(layers))
        n = lm.n_layers
        bad = [i for i in self.layers if not 0 <= i < n]
        if bad:
            raise UsageError(f"layer {bad[0]} is out of range: this model has {n} layers")
        self._pos_ids = _accepts(lm.model, "position_ids")
        self._keep = _accepts(lm.model, "logits_to_keep")
        # transformers 5.2x names the cache argument ``cache``; earlier releases (and some
        # architectures) ``past_key_values``.
        self._cache_arg = "cache" if _accepts(lm.model, "cache") else "past_key_values"
        self._eos = _eos_ids(lm)

    @property
    def context_length(self) -> int:
        cfg = self.lm.model.config
        for name in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = getattr(cfg, name, None)
            if isinstance(value, int) and value > 0:
                return value
        return 2048

    @property
    def eos_ids(self) -> frozenset[int]:
        return self._eos

    def _forward(
        self, input_ids: torch.Tensor, state: _State, positions: torch.Tensor
    ) -> tuple[Any, Readout]:
        read: dict[int, torch.Tensor] = {}

        def hook_for(layer: int) -> Callable[..., None]:
            def hook(module: Any, args: Any, output: Any) -> None:
                read[layer] = block_output(output)[:, -1].detach().float()

            return hook

        blocks = self.lm.blocks
        handles = [blocks[i].register_forward_hook(hook_for(i)) for i in self.layers]
        kwargs: dict[str, Any] = {
            "input_ids": input_ids,
            "attention_mask": state.attention_mask,
            self._cache_arg: state.cache,
            "use_cache": True,
        }
        if self._pos_ids:
            kwargs["position_ids"] = positions
        if self._keep:
            kwargs["logits_to_keep"] = 1
        try:
            with torch.inference_mode():
                out = self.lm.model(**kwargs)
        finally:
            for h in handles:
                h.remove()
        logits = out.logits[:, -1].float()
        cache = getattr(out, "cache", None)
        if cache is None:
            cache = getattr(out, "past_key_values", None)
        return cache, Readout(logits, {i: read[i] for i in self.layers})

    def prefill(self, prompts: Sequence[Sequence[int]]) -> tuple[_State, Readout]:
        if not prompts or any(len(p) == 0 for p in prompts):
            raise UsageError("every prompt needs at least one token")
        device = self.lm.device
        width = max(len(p) for p in prompts)
        pad = self.lm.tokenizer.pad_token_id
        ids = torch.full((len(prompts), width), int(pad or 0), dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for b, p in enumerate(prompts):
            ids[b, width - len(p) :] = torch.tensor(list(p), dtype=torch.long)
            mask[b, width - len(p) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        state = _State(None, mask, mask.sum(-1))
        cache, readout = self._forward(ids, state, positions)
        state.cache = cache
        return state, readout

    def step(self, state: _State, tokens: torch.Tensor) -> Readout:
        device = state.attention_mask.device
        ones = torch.ones((tokens.shape[0], 1), dtype=torch.long, device=device)
        state.attention_mask = torch.cat([state.attention_mask, ones], dim=1)
        cache, readout = self._forward(
            tokens.to(device).view(-1, 1), state, state.positions.view(-1, 1)
        )
        state.cache = cache
        state.positions = state.positions + 1
        return readout

    def select(self, state: _State, rows: torch.Tensor) -> None:
        idx = rows.to(state.attention_mask.device)
        state.cache.reorder_cache(idx)
        state.attention_mask = state.attention_mask.index_select(0, idx)
        state.positions = state.positions.index_select(0, idx)


__all__ = ["GuardBackend", "Readout", "TransformersBackend"]
