"""A Ray cluster started by the tests themselves (2 CPUs, no dashboard, no usage statistics),
shared by every test here (started once: Ray takes seconds to start); tiny models written to
folders, since workers load from disk.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

os.environ["RAY_USAGE_STATS_ENABLED"] = "0"


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    import ray

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
        configure_logging=False,
    )
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture
def one_thread() -> Iterator[None]:
    """The serial reference runs with one torch thread, as each 1-CPU Ray task does, so the two
    do the same arithmetic."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny_folders(
    make_lm: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[Path]]:
    """A tiny random base model folder and four LoRA adapters on it (random, so each moves it)."""
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("tiny-zoo")
    lm = make_lm("llama")
    base = root / "base"
    lm.model.save_pretrained(base)
    lm.tokenizer.save_pretrained(base)
    adapters = []
    for k in range(4):
        torch.manual_seed(100 + k)
        cfg = LoraConfig(
            r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False
        )
        lora = get_peft_model(make_lm("llama").model, cfg)
        lora.save_pretrained(root / f"adapter-{k}")
        adapters.append(root / f"adapter-{k}")
    return base, adapters
