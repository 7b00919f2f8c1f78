"""Steering and ablation as context managers around generation, and their permanent forms.

Modes (applied to the residual stream at the output of the chosen decoder blocks):

* ``add``       ``h + a·u``
* ``add_norm``  ``h + a·u`` rescaled to ``‖h‖`` (norm-preserving)
* ``ablate``    ``h − (h·u)u`` (directional ablation, project out)
* ``clamp``     the projection ``h·u`` clipped into ``[lo, hi]``

Hooks are forward hooks owned by the context manager and removed in ``finally``; a user's own
hooks are never touched. ``positions="new"`` steers only generated tokens (decode steps), which
is the same for left- and right-padded batches. :func:`orthogonalize` bakes an ablation into
the weights, and :func:`export_control_vector` writes a llama.cpp control vector (GGUF).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from tripwire._io import atomic_path
from tripwire.errors import UsageError
from tripwire.models.layers import resolve_layers
from tripwire.models.loading import LocalModel
from tripwire.whitebox.capture import block_output

Mode = Literal["add", "add_norm", "ablate", "clamp"]
MODES = ("add", "add_norm", "ablate", "clamp")
Directions = Mapping[int, np.ndarray | torch.Tensor]

#: Sub-modules that write into the residual stream, by name suffix (Llama/Qwen/Mistral/Phi-3,
#: GPT-2, GPT-NeoX, OPT). Used for exact whole-model ablation and orthogonalisation.
WRITER_SUFFIXES = (
    "self_attn.o_proj",
    "mlp.down_proj",
    "attn.c_proj",
    "mlp.c_proj",
    "attention.dense",
    "mlp.dense_4h_to_h",
    "self_attn.out_proj",
    "fc2",
)
#: Architectures whose sub-layer outputs pass a norm before the residual add: orthogonalising
#: the writers there does not remove the direction exactly.
_POST_NORM = {"gemma2", "gemma3_text", "gemma3", "olmo2"}


def _unit(v: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(v) if not isinstance(v, torch.Tensor) else v).float()
    n = t.norm()
    if not torch.isfinite(n) or n == 0:
        raise UsageError("a steering direction is zero or not finite")
    return t / n


def _edit(
    h: torch.Tensor, u: torch.Tensor, mode: str, strength: float, lo: float | None, hi: float | None
) -> torch.Tensor:
    u = u.to(h.dtype)
    if mode == "add":
        return h + strength * u
    if mode == "add_norm":
        out = h + strength * u
        return out * (h.norm(dim=-1, keepdim=True) / out.norm(dim=-1, keepdim=True).clamp(min=1e-6))
    proj = h @ u
    if mode == "ablate":
        return h - proj[..., None] * u
    target = proj.clamp(min=lo, max=hi)
    return h + (target - proj)[..., None] * u


def _replace_output(output: Any, new: torch.Tensor) -> Any:
    if isinstance(output, torch.Tensor):
        return new
    return (new, *output[1:])


@contextmanager
def steer(
    lm: LocalModel,
    directions: Directions,
    mode: Mode = "add",
    strength: float = 0.0,
    clamp: tuple[float | None, float | None] = (None, None),
    positions: Literal["all", "new"] = "all",
) -> Iterator[None]:
    """Steer the residual stream at the blocks named in ``directions`` while in the block.

    Args:
        lm: the model.
        directions: block index (negative allowed) -> direction (made unit length).
        mode: ``add``, ``add_norm``, ``ablate`` or ``clamp``.
        strength: the coefficient ``a`` for ``add``/``add_norm`` (in residual-stream units).
        clamp: ``(lo, hi)`` bounds on the projection for ``clamp``; ``None`` = unbounded.
        positions: ``all`` tokens, or only ``new`` (generated) tokens.

    Example:
        >>> with steer(lm, {12: v}, mode="add", strength=8.0):  # doctest: +SKIP
        ...     text = generate(lm, ["Tell me about your day."])
    """
    if mode not in MODES:
        raise UsageError(f"unknown steering mode {mode!r}: use one of {', '.join(MODES)}")
    if mode == "clamp" and clamp == (None, None):
        raise UsageError("mode='clamp' needs at least one bound: clamp=(lo, hi)")
    if positions not in ("all", "new"):
        raise UsageError("positions must be 'all' or 'new'")
    if not directions:
        raise UsageError("steer needs at least one layer -> direction")
    blocks = lm.blocks
    lo, hi = clamp
    units: dict[int, torch.Tensor] = {}
    for layer, vec in directions.items():
        (idx,) = resolve_layers(layer, len(blocks))
        u = _unit(vec)
        if u.numel() != lm.d_model:
            raise UsageError(
                f"direction for layer {layer} has {u.numel()} dims; model has {lm.d_model}"
            )
        units[idx] = u.to(lm.device)

    def make_hook(u: torch.Tensor) -> Callable[..., Any]:
        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            h = block_output(output)
            if positions == "new" and h.shape[1] != 1:
                return output  # the prompt's prefill pass
            return _replace_output(output, _edit(h, u, mode, strength, lo, hi))

        return hook

    handles = [blocks[i].register_forward_hook(make_hook(u)) for i, u in units.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _writers(lm: LocalModel) -> list[nn.Module]:
    model_type = getattr(lm.model.config, "model_type", "")
    if model_type in _POST_NORM:
        raise UsageError(
            f"{model_type} normalises sub-layer outputs before the residual add, so a weight "
            "ablation is not exact there; use steer(..., mode='ablate') at every layer instead"
        )
    found = []
    for block in lm.blocks:
        mods = [m for name, m in block.named_modules() if name.endswith(WRITER_SUFFIXES)]
        if len(mods) < 2:
            raise UsageError(
                f"cannot find the attention and MLP output projections in {type(block).__name__}; "
                f"known names end in: {', '.join(WRITER_SUFFIXES)}"
            )
        found.extend(mods)
    return found


def _embeddings(lm: LocalModel) -> list[nn.Embedding]:
    """Token and learned position embeddings: everything outside the blocks that writes
    into the residual stream."""
    in_blocks = {id(m) for b in lm.blocks for m in b.modules()}
    return [
        m
        for m in lm.model.modules()
        if isinstance(m, nn.Embedding) and m.embedding_dim == lm.d_model and id(m) not in in_blocks
    ]


def _out_weight(mod: nn.Module) -> tuple[torch.Tensor, bool]:
    """The writer's weight and whether its output dim is the first axis (nn.Linear)."""
    w = mod.weight
    assert isinstance(w, torch.Tensor)
    return w, isinstance(mod, nn.Linear)


@contextmanager
def ablate_everywhere(lm: LocalModel, direction: np.ndarray | torch.Tensor) -> Iterator[None]:
    """Project ``direction`` out of the embeddings and of every attention/MLP output.

    The runtime twin of :func:`orthogonalize` (Arditi et al.'s directional ablation).
    """
    u = _unit(direction).to(lm.device)

    def hook(module: nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor:
        uu = u.to(output.dtype)
        return output - (output @ uu)[..., None] * uu

    mods = [*_embeddings(lm), *_writers(lm)]
    handles = [m.register_forward_hook(hook) for m in mods]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def orthogonalize(lm: LocalModel, direction: np.ndarray | torch.Tensor) -> None:
    """Bake a directional ablation into the weights (in place): nothing writes along ``u``.

    Edits the token (and learned position) embeddings and every attention/MLP output
    projection. Tied output
    embeddings are untied first so the unembedding is left unchanged.
    """
    u = _unit(direction).to(lm.device)
    writers = _writers(lm)
    emb = lm.model.get_input_embeddings()
    out_emb = lm.model.get_output_embeddings()
    with torch.no_grad():
        if out_emb is not None and out_emb.weight is emb.weight:
            out_emb.weight = nn.Parameter(emb.weight.detach().clone())
            lm.model.config.tie_word_embeddings = False
        for table in _embeddings(lm):
            E = table.weight
            E -= (E @ u.to(E.dtype))[:, None] * u.to(E.dtype)[None, :]
        for mod in writers:
            w, linear = _out_weight(mod)
            uu = u.to(w.dtype)
            if linear:  # weight is (out=d_model, in)
                w -= uu[:, None] * (uu @ w)[None, :]
            else:  # GPT-2 Conv1D: weight is (in, out=d_model)
                w -= (w @ uu)[:, None] * uu[None, :]
            bias = getattr(mod, "bias", None)
            if isinstance(bias, torch.Tensor):
                bias -= (bias @ uu) * uu


def export_control_vector(
    directions: Directions,
    path: str | Path,
    model_hint: str,
    strength: float = 1.0,
) -> Path:
    """Write a llama.cpp control vector (``--control-vector FILE.gguf``).

    ``direction.N`` steers the output of decoder block ``N``; llama.cpp cannot steer block 0,
    so a direction there is rejected. Vectors are scaled by ``strength`` (unit directions
    otherwise); llama.cpp's ``--control-vector-scaled FILE S`` scales again at run time.
    """
    import gguf

    if not directions:
        raise UsageError("export_control_vector needs at least one layer -> direction")
    if any(int(k) <= 0 for k in directions):
        raise UsageError("llama.cpp control vectors start at block 1; drop block 0 or negative ids")
    target = Path(path)
    if target.suffix != ".gguf":
        raise UsageError(f"control vector path must end in .gguf, got {target.name}")
    with atomic_path(target) as tmp:
        writer = gguf.GGUFWriter(str(tmp), "controlvector")
        writer.add_string("controlvector.model_hint", model_hint)
        writer.add_uint32("controlvector.layer_count", len(directions))
        for layer in sorted(directions):
            vec = (_unit(directions[layer]) * strength).numpy().astype(np.float32)
            writer.add_tensor(f"direction.{int(layer)}", vec)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
    return target


def read_control_vector(path: str | Path) -> tuple[str, dict[int, np.ndarray]]:
    """Read a control vector GGUF back: ``(model_hint, {block: vector})``."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    hint_field = reader.get_field("controlvector.model_hint")
    if hint_field is None:
        raise UsageError(f"{path} is not a control vector (no controlvector.model_hint)")
    hint = bytes(hint_field.parts[hint_field.data[0]]).decode()
    out = {int(t.name.split(".")[1]): np.array(t.data, dtype=np.float32) for t in reader.tensors}
    return hint, out


__all__ = [
    "MODES",
    "Mode",
    "ablate_everywhere",
    "export_control_vector",
    "orthogonalize",
    "read_control_vector",
    "steer",
]
