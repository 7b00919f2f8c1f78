"""Capture decoder-block activations with forward hooks, reading only the positions asked for.

Hooks are registered on the decoder blocks (never module replacement) and removed in a
``finally``. Read positions come from each sample's own attention mask, so left and right
padding give the same numbers as running the sample alone. Only the requested layers are
hooked, and the forward pass stops after the deepest one (after the last block too: the final norm
and the vocabulary projection are never computed).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from tripwire._io import atomic_path, write_json
from tripwire.errors import UsageError
from tripwire.models.chat import Rendered
from tripwire.models.layers import resolve_layers
from tripwire.models.loading import LocalModel

Positions = Literal["last", "mean", "response"]
TokenMask = Sequence[Sequence[bool]]

_POSITIONS = ("last", "mean", "response")


class _StopForward(Exception):
    """Raised from the deepest hook: later blocks are not needed."""


@dataclass
class Activations:
    """Activations per layer: ``acts[layer]`` is a float32 ``(n_rows, d_model)`` array.

    For ``positions="last"``/``"mean"`` there is one row per sample. For per-token captures
    (``"response"`` or a mask) rows are tokens and ``sample_index[row]`` names their sample.
    When captured with ``out_dir`` the arrays live in safetensors shards and are read per layer.
    """

    layers: list[int]
    positions: str
    n_samples: int
    sample_index: np.ndarray | None = None
    _data: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _dir: Path | None = None
    _shards: list[str] = field(default_factory=list, repr=False)

    def __getitem__(self, layer: int) -> np.ndarray:
        if layer not in self.layers:
            raise KeyError(f"layer {layer} was not captured; captured layers: {self.layers}")
        if layer in self._data:
            return self._data[layer]
        if self._dir is None:
            raise KeyError(f"layer {layer} has no data")
        return np.concatenate(list(self.iter_shards(layer)), axis=0)

    def iter_shards(self, layer: int) -> Iterator[np.ndarray]:
        """Yield one layer's rows shard by shard (for sets larger than RAM)."""
        if self._dir is None:
            yield self[layer]
            return
        for shard in self._shards:
            with safe_open(str(self._dir / shard), framework="np") as f:
                yield f.get_tensor(f"layer.{layer}")

    def stack(self, layers: Sequence[int] | None = None) -> np.ndarray:
        """Concatenate layers feature-wise: ``(n_rows, len(layers) * d_model)``."""
        chosen = self.layers if layers is None else list(layers)
        return np.concatenate([self[i] for i in chosen], axis=1)

    def per_sample_mean(self, layer: int) -> np.ndarray:
        """Average per-token rows back to one row per sample."""
        x = self[layer]
        if self.sample_index is None:
            return x
        out = np.zeros((self.n_samples, x.shape[1]), dtype=np.float32)
        counts = np.bincount(self.sample_index, minlength=self.n_samples).astype(np.float32)
        np.add.at(out, self.sample_index, x)
        return out / np.maximum(counts, 1.0)[:, None]

    @classmethod
    def open(cls, directory: str | Path) -> Activations:
        """Open activations streamed to ``directory`` by :func:`capture`."""
        d = Path(directory)
        index_file = d / "index.json"
        if not index_file.is_file():
            raise UsageError(f"{d} holds no captured activations (index.json is missing)")
        index = json.loads(index_file.read_text())
        sample_index = None
        if index["per_token"]:
            parts = []
            for shard in index["shards"]:
                with safe_open(str(d / shard), framework="np") as f:
                    parts.append(f.get_tensor("sample_index"))
            sample_index = np.concatenate(parts).astype(np.int64)
        return cls(
            layers=list(index["layers"]),
            positions=index["positions"],
            n_samples=int(index["n_samples"]),
            sample_index=sample_index,
            _dir=d,
            _shards=list(index["shards"]),
        )


@dataclass
class _Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    read_mask: torch.Tensor  # (B, T) bool: which positions to read
    positions: str


def _tokenize(
    lm: LocalModel, item: str | Rendered, mask: Sequence[bool] | None, positions: str
) -> tuple[list[int], list[bool]]:
    """Token ids of one sample and the positions to read, before any padding."""
    text = item.text if isinstance(item, Rendered) else item
    # Rendered text came from a chat template, which already carries its special tokens.
    add_special = not isinstance(item, Rendered)
    enc = lm.tokenizer(text, add_special_tokens=add_special, return_offsets_mapping=mask is None)
    ids: list[int] = list(enc["input_ids"])
    if not ids:
        raise UsageError("an input text tokenised to zero tokens; remove empty prompts")
    if mask is not None:
        if len(mask) != len(ids):
            raise UsageError(
                f"a token mask has length {len(mask)} but its text has {len(ids)} tokens"
            )
        return ids, [bool(m) for m in mask]
    span = item.span if isinstance(item, Rendered) else None
    if positions == "last":
        return ids, [False] * (len(ids) - 1) + [True]
    if span is None:
        if positions == "response":
            raise UsageError('positions="response" needs rendered prompts with a response span')
        return ids, [True] * len(ids)
    start, end = span
    offsets = enc["offset_mapping"]
    # A token is read when it overlaps the span (a leading space may sit just before it).
    read = [bool(e > s and s < end and e > start) for s, e in offsets]
    if not any(read):
        raise UsageError("no token falls inside the response span; check the rendered prompt")
    return ids, read


def _pad(lm: LocalModel, rows: list[tuple[list[int], list[bool]]], positions: str) -> _Batch:
    pad_id = lm.tokenizer.pad_token_id
    if pad_id is None:
        pad_id = 0
    width = max(len(ids) for ids, _ in rows)
    left = getattr(lm.tokenizer, "padding_side", "right") == "left"
    ids_t = torch.full((len(rows), width), int(pad_id), dtype=torch.long)
    att = torch.zeros((len(rows), width), dtype=torch.long)
    read = torch.zeros((len(rows), width), dtype=torch.bool)
    for b, (ids, mask) in enumerate(rows):
        n = len(ids)
        sl = slice(width - n, width) if left else slice(0, n)
        ids_t[b, sl] = torch.tensor(ids)
        att[b, sl] = 1
        read[b, sl] = torch.tensor(mask)
    return _Batch(ids_t, att, read, positions)


def _accepts_position_ids(model: Any) -> bool:
    import inspect

    try:
        return "position_ids" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def forward_kwargs(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor
) -> dict[str, Any]:
    """Arguments for a padding-correct forward pass: position ids follow the attention mask."""
    kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
    if _accepts_position_ids(model):
        pos = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        kwargs["position_ids"] = pos
    kwargs["use_cache"] = False
    return kwargs


def block_output(output: Any) -> torch.Tensor:
    """The hidden-state tensor of a decoder block's output (a tensor or a tuple)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"unexpected decoder block output type {type(output).__name__}")


def _reduce(hidden: torch.Tensor, batch: _Batch) -> torch.Tensor:
    read = batch.read_mask.to(hidden.device)
    if batch.positions == "mean":
        w = read.to(hidden.dtype)
        return (hidden * w[..., None]).sum(1) / w.sum(1, keepdim=True).clamp(min=1)
    if batch.positions == "last":
        idx = (read.long() * torch.arange(read.shape[1], device=read.device)).argmax(1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]
    return hidden[read]


def capture(
    lm: LocalModel,
    texts: Sequence[str | Rendered],
    layers: int | Sequence[int] | None = None,
    positions: Positions = "last",
    mask: TokenMask | None = None,
    batch_size: int = 16,
    out_dir: str | Path | None = None,
    shard_samples: int = 4096,
    progress: Callable[[int], None] | None = None,
) -> Activations:
    """Run ``texts`` through the model and keep the residual stream at ``layers``.

    Args:
        lm: the loaded model.
        texts: raw strings (tokenised with special tokens) or :class:`Rendered` chat prompts
            (tokenised as rendered; their ``span`` marks the response or user text).
        layers: block indices (negative allowed); ``None`` = every block.
        positions: ``"last"`` (last real token), ``"mean"`` (mean over the span, or all real
            tokens without one) or ``"response"`` (every token in the span, one row each).
        mask: instead of ``positions``, a per-sample token mask (length = that sample's token
            count); every masked token becomes a row.
        batch_size: samples per forward pass (sorted by length to limit padding).
        out_dir: stream to safetensors shards in this folder instead of keeping it in memory.
        shard_samples: samples per shard when streaming.
        progress: called with the number of samples finished after each batch.

    Returns:
        :class:`Activations` with rows in the order of ``texts``.
    """
    if positions not in _POSITIONS:
        raise UsageError(f"unknown positions {positions!r}: use one of {', '.join(_POSITIONS)}")
    if not texts:
        raise UsageError("capture needs at least one text")
    if mask is not None and len(mask) != len(texts):
        raise UsageError(f"mask has {len(mask)} rows for {len(texts)} texts")
    if batch_size < 1:
        raise UsageError("batch_size must be >= 1")
    blocks = lm.blocks
    chosen = resolve_layers(list(layers) if isinstance(layers, Sequence) else layers, len(blocks))
    mode = "tokens" if mask is not None or positions == "response" else positions
    per_token = mode == "tokens"
    directory = Path(out_dir) if out_dir is not None else None
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)

    store: dict[int, list[torch.Tensor]] = {i: [] for i in chosen}
    state: dict[str, _Batch] = {}
    deepest = max(chosen)

    def make_hook(layer: int) -> Callable[..., None]:
        def hook(module: Any, args: Any, output: Any) -> None:
            hidden = block_output(output)
            store[layer].append(_reduce(hidden, state["batch"]).detach().float().cpu())
            if layer == deepest:  # later blocks, the final norm and the LM head are not needed
                raise _StopForward

        return hook

    shards: list[str] = []
    data: dict[int, np.ndarray] = {}
    sample_rows: list[np.ndarray] = []
    done = 0
    chunk = len(texts) if directory is None else max(1, shard_samples)
    handles = [blocks[i].register_forward_hook(make_hook(i)) for i in chosen]
    try:
        for c0 in range(0, len(texts), chunk):
            items = list(range(c0, min(c0 + chunk, len(texts))))
            toks = {
                i: _tokenize(lm, texts[i], None if mask is None else mask[i], mode) for i in items
            }
            order = sorted(items, key=lambda i: len(toks[i][0]))
            for i in store:
                store[i].clear()
            row_owner: list[np.ndarray] = []
            for b0 in range(0, len(order), batch_size):
                idx = order[b0 : b0 + batch_size]
                batch = _pad(lm, [toks[i] for i in idx], "tokens" if per_token else mode)
                state["batch"] = batch
                kwargs = forward_kwargs(
                    lm.model, batch.input_ids.to(lm.device), batch.attention_mask.to(lm.device)
                )
                with torch.inference_mode(), contextlib.suppress(_StopForward):
                    lm.model(**kwargs)
                if per_token:
                    counts = batch.read_mask.sum(1).tolist()
                    row_owner.append(np.repeat(np.array(idx), counts))
                else:
                    row_owner.append(np.array(idx))
                done += len(idx)
                if progress is not None:
                    progress(done)
            owner = np.concatenate(row_owner)
            # Restore the caller's order (stable, so tokens of one sample keep their order).
            perm = np.argsort(owner, kind="stable")
            chunk_data = {i: torch.cat(store[i]).numpy()[perm] for i in chosen}
            owner = owner[perm]
            if directory is None:
                data = chunk_data
                sample_rows.append(owner)
            else:
                name = f"shard-{len(shards):05d}.safetensors"
                tensors = {f"layer.{i}": torch.from_numpy(chunk_data[i]) for i in chosen}
                tensors["sample_index"] = torch.from_numpy(owner.astype(np.int64))
                with atomic_path(directory / name) as tmp:
                    save_file(tensors, str(tmp))
                shards.append(name)
                sample_rows.append(owner)
    finally:
        for h in handles:
            h.remove()
        state.clear()

    sample_index = np.concatenate(sample_rows).astype(np.int64) if per_token else None
    label = "mask" if mask is not None else positions
    if directory is not None:
        write_json(
            directory / "index.json",
            {
                "layers": chosen,
                "positions": label,
                "n_samples": len(texts),
                "per_token": per_token,
                "shards": shards,
                "model": lm.name,
            },
        )
        return Activations.open(directory)
    return Activations(
        layers=chosen,
        positions=label,
        n_samples=len(texts),
        sample_index=sample_index,
        _data=data,
    )


__all__ = ["Activations", "Positions", "block_output", "capture", "forward_kwargs"]
