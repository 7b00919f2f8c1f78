from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from tests.conftest import ARCHS
from tripwire.errors import UsageError
from tripwire.models.chat import render_with_response
from tripwire.whitebox.capture import Activations, capture

PROMPTS = [
    "Write a haiku about autumn leaves.",
    "Hi",
    "Explain photosynthesis in simple terms for a ten-year-old, with one example.",
]


def _hidden_states(lm: Any, text: str) -> tuple[torch.Tensor, ...]:
    """Reference: the model's own hidden_states for one unpadded text (tests only)."""
    ids = lm.tokenizer(text, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        return lm.model(**ids, output_hidden_states=True).hidden_states  # type: ignore[no-any-return]


@pytest.mark.parametrize("arch", ARCHS)
def test_hooks_match_hidden_states(make_lm: Any, arch: str) -> None:
    lm = make_lm(arch)
    rendered = [lm.prompt(p) for p in PROMPTS]
    acts = capture(lm, rendered, layers=[0, 2], positions="last")
    for i, r in enumerate(rendered):
        hs = _hidden_states(lm, r.text)
        # hidden_states[k + 1] is block k's output, except the last entry (final norm applied).
        np.testing.assert_allclose(acts[0][i], hs[1][0, -1].numpy(), atol=1e-4)
        np.testing.assert_allclose(acts[2][i], hs[3][0, -1].numpy(), atol=1e-4)


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gpt_neox", "gemma2"])
@pytest.mark.parametrize("side", ["left", "right"])
@pytest.mark.parametrize("positions", ["last", "mean", "response"])
def test_batched_equals_unbatched_under_padding(
    make_lm: Any, arch: str, side: str, positions: str
) -> None:
    lm = make_lm(arch)
    lm.tokenizer.padding_side = side
    try:
        rendered = [lm.prompt(p) for p in PROMPTS]
        batched = capture(lm, rendered, layers=[1, -1], positions=positions, batch_size=3)  # type: ignore[arg-type]
        for layer in (1, 3):
            rows = [capture(lm, [r], layers=[layer], positions=positions)[layer] for r in rendered]  # type: ignore[arg-type]
            np.testing.assert_allclose(batched[layer], np.concatenate(rows), atol=1e-4)
    finally:
        lm.tokenizer.padding_side = "right"


def test_response_positions_cover_only_the_response(tiny: Any) -> None:
    msgs = [
        {"role": "user", "content": "Name a colour."},
        {"role": "assistant", "content": "Blue sky"},
    ]
    r = render_with_response(tiny.tokenizer, msgs)
    acts = capture(tiny, [r], layers=[0], positions="response")
    enc = tiny.tokenizer(r.text, add_special_tokens=False, return_offsets_mapping=True)
    inside = [
        i for i, (s, e) in enumerate(enc["offset_mapping"]) if s < r.span[1] and e > r.span[0]
    ]
    hs = _hidden_states(tiny, r.text)[1][0]
    np.testing.assert_allclose(acts[0], hs[inside].numpy(), atol=1e-4)
    assert acts.sample_index is not None and set(acts.sample_index) == {0}


def test_mask_positions_and_errors(tiny: Any) -> None:
    text = "Write a haiku about autumn leaves."
    n = len(tiny.tokenizer(text)["input_ids"])
    mask = [[i % 2 == 0 for i in range(n)]]
    acts = capture(tiny, [text], layers=[1], mask=mask)
    assert acts[1].shape == (sum(mask[0]), 32)
    with pytest.raises(UsageError, match="mask has length"):
        capture(tiny, [text], layers=[1], mask=[[True]])
    with pytest.raises(UsageError, match="unknown positions"):
        capture(tiny, [text], positions="first")  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="at least one text"):
        capture(tiny, [])


def test_streaming_to_shards_matches_memory(tiny: Any, tmp_path: Any) -> None:
    rendered = [tiny.prompt(p) for p in PROMPTS * 3]
    mem = capture(tiny, rendered, layers=[0, 3], positions="response")
    disk = capture(
        tiny, rendered, layers=[0, 3], positions="response", out_dir=tmp_path, shard_samples=4
    )
    assert len(list(tmp_path.glob("shard-*.safetensors"))) == 3
    for layer in (0, 3):
        np.testing.assert_allclose(disk[layer], mem[layer])
    reopened = Activations.open(tmp_path)
    assert reopened.layers == [0, 3]
    np.testing.assert_array_equal(reopened.sample_index, mem.sample_index)
    assert sum(len(s) for s in reopened.iter_shards(0)) == len(mem[0])
    with pytest.raises(UsageError, match="index.json"):
        Activations.open(tmp_path / "nothing")


def test_hooks_are_removed_even_on_error_and_user_hooks_survive(tiny: Any) -> None:
    calls: list[int] = []
    user = tiny.blocks[0].register_forward_hook(lambda m, a, o: calls.append(1))
    try:
        with pytest.raises(UsageError):
            capture(tiny, ["ok text", ""], layers=[0])  # empty text fails mid-way
        assert len(tiny.blocks[0]._forward_hooks) == 1
        capture(tiny, ["ok text"], layers=[0])
        assert calls, "the user's own hook must still fire"
        assert len(tiny.blocks[0]._forward_hooks) == 1
    finally:
        user.remove()


def test_per_sample_mean_equals_mean_positions(tiny: Any) -> None:
    msgs = [
        [{"role": "user", "content": p}, {"role": "assistant", "content": "Sure thing."}]
        for p in PROMPTS
    ]
    rendered = [render_with_response(tiny.tokenizer, m) for m in msgs]
    tokens = capture(tiny, rendered, layers=[2], positions="response")
    mean = capture(tiny, rendered, layers=[2], positions="mean")
    np.testing.assert_allclose(tokens.per_sample_mean(2), mean[2], atol=1e-5)
