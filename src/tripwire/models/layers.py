"""Find a model's decoder blocks: a registry of known paths, then a guesser.

Never hard-code ``model.model.layers``: Llama-style models keep blocks there, GPT-2 in
``transformer.h``, GPT-NeoX in ``gpt_neox.layers``, and wrappers (PEFT, multimodal) move them.
"""

from __future__ import annotations

from torch import nn

from tripwire.errors import LayerResolutionError, UsageError

#: ``config.model_type`` -> dotted path of the ``nn.ModuleList`` holding the decoder blocks.
BLOCK_PATHS: dict[str, str] = {
    "llama": "model.layers",
    "mistral": "model.layers",
    "mixtral": "model.layers",
    "qwen2": "model.layers",
    "qwen2_moe": "model.layers",
    "qwen3": "model.layers",
    "qwen3_moe": "model.layers",
    "gemma": "model.layers",
    "gemma2": "model.layers",
    "gemma3_text": "model.layers",
    "phi3": "model.layers",
    "olmo2": "model.layers",
    "granite": "model.layers",
    "gpt2": "transformer.h",
    "gptj": "transformer.h",
    "gpt_neox": "gpt_neox.layers",
    "falcon": "transformer.h",
    "bloom": "transformer.h",
    "opt": "model.decoder.layers",
}


def _get_path(root: nn.Module, path: str) -> nn.Module | None:
    node: nn.Module | None = root
    for part in path.split("."):
        node = getattr(node, part, None)
        if node is None:
            return None
    return node


def _unwrap(model: nn.Module) -> nn.Module:
    """Strip a PEFT wrapper, so registry paths apply to the base model."""
    get_base = getattr(model, "get_base_model", None)
    if callable(get_base):
        base = get_base()
        if isinstance(base, nn.Module):
            return base
    return model


def _guess(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """Pick the longest ModuleList whose children share one class (the decoder stack)."""
    candidates: list[tuple[str, nn.ModuleList]] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            kinds = {type(child) for child in module}
            if len(kinds) == 1:
                candidates.append((name, module))
    if not candidates:
        raise LayerResolutionError(
            f"no decoder blocks found in {type(model).__name__}: it has no nn.ModuleList of "
            "identical blocks; pass layer_path='dotted.path.to.blocks'"
        )

    # Prefer names that look like a block stack, then the longest list.
    def rank(item: tuple[str, nn.ModuleList]) -> tuple[int, int]:
        name = item[0].rsplit(".", 1)[-1]
        return (int(name in {"layers", "h", "blocks", "layer"}), len(item[1]))

    candidates.sort(key=rank, reverse=True)
    best = candidates[0]
    if rank(best)[0] == 0 and len(candidates) > 1:
        names = ", ".join(f"{n} ({len(m)})" for n, m in candidates[:5])
        raise LayerResolutionError(
            f"cannot tell which ModuleList holds the decoder blocks of {type(model).__name__}; "
            f"candidates: {names}; pass layer_path='...'"
        )
    return best


def block_path(model: nn.Module, layer_path: str | None = None) -> str:
    """Return the dotted path (relative to the unwrapped model) of the decoder block list."""
    base = _unwrap(model)
    if layer_path is not None:
        if not isinstance(_get_path(base, layer_path), nn.ModuleList):
            raise LayerResolutionError(
                f"layer_path {layer_path!r} is not an nn.ModuleList in {type(base).__name__}"
            )
        return layer_path
    model_type = getattr(getattr(base, "config", None), "model_type", None)
    if isinstance(model_type, str) and model_type in BLOCK_PATHS:
        path = BLOCK_PATHS[model_type]
        if isinstance(_get_path(base, path), nn.ModuleList):
            return path
    return _guess(base)[0]


def decoder_blocks(model: nn.Module, layer_path: str | None = None) -> list[nn.Module]:
    """The decoder blocks of ``model`` in order (works through PEFT wrappers)."""
    base = _unwrap(model)
    blocks = _get_path(base, block_path(model, layer_path))
    assert isinstance(blocks, nn.ModuleList)
    return list(blocks)


def resolve_layers(layers: int | list[int] | range | None, n_layers: int) -> list[int]:
    """Normalise layer indices (negative allowed, ``None`` = all) to sorted unique non-negatives."""
    if layers is None:
        return list(range(n_layers))
    items = [layers] if isinstance(layers, int) else list(layers)
    out: set[int] = set()
    for i in items:
        j = i + n_layers if i < 0 else i
        if not 0 <= j < n_layers:
            raise UsageError(
                f"layer {i} is out of range: this model has {n_layers} layers (0..{n_layers - 1})"
            )
        out.add(j)
    if not out:
        raise UsageError("no layers selected: pass at least one layer index")
    return sorted(out)


__all__ = ["BLOCK_PATHS", "block_path", "decoder_blocks", "resolve_layers"]
