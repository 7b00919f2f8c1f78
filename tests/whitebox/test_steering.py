from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from tripwire.errors import UsageError
from tripwire.whitebox.capture import capture
from tripwire.whitebox.generation import generate
from tripwire.whitebox.steering import (
    ablate_everywhere,
    export_control_vector,
    orthogonalize,
    read_control_vector,
    steer,
)

PROMPTS = ["Write a haiku about autumn leaves.", "Hi", "Give three tips for a job interview."]


def _unit(d: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(d)
    return v / np.linalg.norm(v)


def test_add_moves_projection_by_strength(tiny: Any) -> None:
    u = _unit(32)
    r = [tiny.prompt(p) for p in PROMPTS]
    base = capture(tiny, r, layers=[1], positions="last")[1] @ u
    with steer(tiny, {1: u}, mode="add", strength=5.0):
        up = capture(tiny, r, layers=[1], positions="last")[1] @ u
    np.testing.assert_allclose(up - base, 5.0, atol=1e-3)
    downstream = capture(tiny, r, layers=[3], positions="last")[3] @ u
    with steer(tiny, {1: u}, mode="add", strength=-5.0):
        after = capture(tiny, r, layers=[3], positions="last")[3] @ u
    assert not np.allclose(after, downstream), "steering must reach later layers"


def test_norm_preserving_ablate_and_clamp(tiny: Any) -> None:
    u = _unit(32, 1)
    r = [tiny.prompt(p) for p in PROMPTS]
    base = capture(tiny, r, layers=[2], positions="last")[2]
    with steer(tiny, {2: u}, mode="add_norm", strength=3.0):
        kept = capture(tiny, r, layers=[2], positions="last")[2]
    np.testing.assert_allclose(
        np.linalg.norm(kept, axis=1), np.linalg.norm(base, axis=1), rtol=1e-4
    )
    assert ((kept - base) @ u > 0).all()
    with steer(tiny, {2: u}, mode="ablate"):
        ab = capture(tiny, r, layers=[2], positions="last")[2]
    np.testing.assert_allclose(ab @ u, 0.0, atol=1e-4)
    with steer(tiny, {2: u}, mode="clamp", clamp=(None, -0.5)):
        cl = capture(tiny, r, layers=[2], positions="last")[2]
    assert (cl @ u <= -0.5 + 1e-4).all()


def test_hooks_removed_after_exception(tiny: Any) -> None:
    u = _unit(32)
    with pytest.raises(RuntimeError), steer(tiny, {0: u}, strength=1.0):
        raise RuntimeError("boom")
    assert all(not b._forward_hooks for b in tiny.blocks)


def test_steering_is_padding_aware_in_batched_generation(tiny: Any) -> None:
    u = _unit(32, 2)
    r = [tiny.prompt(p) for p in PROMPTS]
    for positions in ("all", "new"):
        with steer(tiny, {1: u}, mode="add", strength=4.0, positions=positions):  # type: ignore[arg-type]
            batched = generate(tiny, r, max_new_tokens=6, batch_size=3)
            single = [generate(tiny, [p], max_new_tokens=6)[0] for p in r]
        assert batched == single
    plain = generate(tiny, r, max_new_tokens=6)
    with steer(tiny, {1: u}, mode="add", strength=40.0):
        assert generate(tiny, r, max_new_tokens=6) != plain


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gpt2", "gpt_neox"])
def test_orthogonalize_equals_runtime_ablation(make_lm: Any, arch: str) -> None:
    lm = make_lm(arch)
    u = _unit(32, 3)
    ids = lm.tokenizer("Write a haiku about autumn leaves.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        base = lm.model(ids).logits
        with ablate_everywhere(lm, u):
            hooked = lm.model(ids).logits
        orthogonalize(lm, u)
        baked = lm.model(ids).logits
    assert (hooked - base).abs().max() > 1e-3
    torch.testing.assert_close(baked, hooked, atol=1e-4, rtol=1e-4)
    acts = capture(lm, ["Write a haiku about autumn leaves."], layers=None, positions="mean")
    for layer in acts.layers:
        np.testing.assert_allclose(acts[layer] @ u, 0.0, atol=1e-4)


def test_control_vector_roundtrip(tmp_path: Any) -> None:
    u = _unit(32)
    path = export_control_vector({3: u, 5: -u}, tmp_path / "joy.gguf", "llama", strength=2.0)
    hint, vecs = read_control_vector(path)
    assert hint == "llama"
    assert sorted(vecs) == [3, 5]
    np.testing.assert_allclose(vecs[3], 2.0 * u, atol=1e-6)
    with pytest.raises(UsageError, match="block 1"):
        export_control_vector({0: u}, tmp_path / "bad.gguf", "llama")
    with pytest.raises(UsageError, match=".gguf"):
        export_control_vector({1: u}, tmp_path / "bad.bin", "llama")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["joy.gguf"]


def test_steer_input_errors(tiny: Any) -> None:
    u = _unit(32)
    with pytest.raises(UsageError, match="unknown steering mode"), steer(tiny, {0: u}, mode="push"):  # type: ignore[arg-type]
        pass
    with (
        pytest.raises(UsageError, match="needs at least one bound"),
        steer(tiny, {0: u}, mode="clamp"),
    ):
        pass
    with pytest.raises(UsageError, match="dims"), steer(tiny, {0: np.ones(7)}):
        pass
    with pytest.raises(UsageError, match="zero"), steer(tiny, {0: np.zeros(32)}):
        pass
    with pytest.raises(UsageError, match="out of range"), steer(tiny, {9: u}):
        pass
    assert all(not b._forward_hooks for b in tiny.blocks)


def test_orthogonalize_refuses_post_norm_architectures(make_lm: Any) -> None:
    lm = make_lm("gemma2")
    before = [p.detach().clone() for p in lm.model.parameters()]
    with pytest.raises(UsageError, match="not exact"):
        orthogonalize(lm, _unit(32))
    assert all(torch.equal(a, b) for a, b in zip(before, lm.model.parameters(), strict=True))
