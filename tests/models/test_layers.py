from __future__ import annotations

from typing import Any

import pytest
from torch import nn

from tests.conftest import ARCHS
from tripwire.errors import LayerResolutionError, UsageError
from tripwire.models.layers import BLOCK_PATHS, block_path, decoder_blocks, resolve_layers


@pytest.mark.parametrize("arch", ARCHS)
def test_registry_finds_blocks_of_each_architecture(make_lm: Any, arch: str) -> None:
    lm = make_lm(arch)
    assert lm.model.config.model_type in BLOCK_PATHS
    blocks = decoder_blocks(lm.model)
    assert len(blocks) == 4
    assert len({type(b) for b in blocks}) == 1


def test_guesser_finds_blocks_of_an_unknown_wrapper(make_lm: Any) -> None:
    inner = make_lm("llama").model

    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.backbone = inner.model  # no config -> no registry hit

    w = Wrapper()
    assert block_path(w) == "backbone.layers"
    assert decoder_blocks(w)[0] is inner.model.layers[0]


def test_guesser_error_names_candidates() -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.first = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
            self.second = nn.ModuleList([nn.ReLU() for _ in range(2)])

    with pytest.raises(LayerResolutionError, match="candidates: first"):
        block_path(Odd())
    with pytest.raises(LayerResolutionError, match="no decoder blocks"):
        block_path(nn.Linear(2, 2))


def test_explicit_layer_path_is_checked(make_lm: Any) -> None:
    lm = make_lm("gpt2")
    assert block_path(lm.model, "transformer.h") == "transformer.h"
    with pytest.raises(LayerResolutionError, match="not an nn.ModuleList"):
        block_path(lm.model, "transformer.wte")


def test_resolve_layers_negative_and_range() -> None:
    assert resolve_layers(-1, 4) == [3]
    assert resolve_layers([0, -1, 3], 4) == [0, 3]
    assert resolve_layers(None, 3) == [0, 1, 2]
    with pytest.raises(UsageError, match="out of range"):
        resolve_layers([4], 4)
    with pytest.raises(UsageError, match="no layers"):
        resolve_layers([], 4)
