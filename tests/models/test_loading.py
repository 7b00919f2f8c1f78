from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from tripwire.errors import ModelLoadError
from tripwire.models import load_model, tripwire_home


def _save(lm: Any, path: Path) -> Path:
    lm.model.save_pretrained(path)
    lm.tokenizer.save_pretrained(path)
    return path


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def test_loads_a_local_folder(make_lm: Any, tmp_path: Path) -> None:
    src = make_lm("qwen2")
    folder = _save(src, tmp_path / "m")
    lm = load_model(str(folder))
    assert lm.n_layers == 4 and lm.d_model == 32
    assert lm.describe()["model_type"] == "qwen2"
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        torch.testing.assert_close(lm.model(ids).logits, src.model(ids).logits)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("not-a-model", "unknown model"),
        ("/definitely/missing/folder", "does not exist"),
        ("someorg/some-model", "not in the local Hugging Face cache"),
        ("missing.gguf", "does not exist"),
    ],
)
def test_bad_specs_fail_clearly_and_write_nothing(spec: str, message: str) -> None:
    home = tripwire_home()
    before = _tree(home)
    with pytest.raises(ModelLoadError, match=message) as info:
        load_model(spec)
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 2
    assert _tree(home) == before


def test_folder_problems(make_lm: Any, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="config.json is missing"):
        load_model(str(empty))
    folder = _save(make_lm("llama"), tmp_path / "m")
    (folder / "model.safetensors").write_bytes(b"this is not a safetensors file")
    with pytest.raises(ModelLoadError, match="cannot load model"):
        load_model(str(folder))
    with pytest.raises(ModelLoadError, match="unknown dtype"):
        load_model(str(folder), dtype="float8")


def test_corrupt_gguf_is_rejected_and_nothing_cached(tmp_path: Path) -> None:
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + os.urandom(64))
    with pytest.raises(ModelLoadError, match="cannot read GGUF"):
        load_model(str(bad))
    models_dir = tripwire_home() / "models"
    assert not models_dir.exists() or not [
        p for p in models_dir.iterdir() if not p.name.startswith(".")
    ]


def _lora(lm: Any, path: Path, seed: int = 0) -> Path:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    cfg = LoraConfig(
        r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    peft_model = get_peft_model(lm.model, cfg)
    peft_model.save_pretrained(path)
    return path


def test_adapter_is_applied(make_lm: Any, tmp_path: Path) -> None:
    folder = _save(make_lm("llama"), tmp_path / "base")
    adapter = _lora(make_lm("llama"), tmp_path / "lora")
    plain = load_model(str(folder))
    adapted = load_model(str(folder), adapter=adapter)
    assert adapted.adapter == str(adapter)
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        assert not torch.allclose(plain.model(ids).logits, adapted.model(ids).logits)
    assert adapted.n_layers == 4  # blocks still found after merging


def test_adapter_errors(make_lm: Any, tmp_path: Path) -> None:
    folder = _save(make_lm("llama"), tmp_path / "base")
    with pytest.raises(ModelLoadError, match="adapter_config.json is missing"):
        load_model(str(folder), adapter=tmp_path)
    other = _lora(make_lm("qwen2"), tmp_path / "qwen-lora")
    cfg = json.loads((other / "adapter_config.json").read_text())
    cfg["target_modules"] = ["c_attn"]  # a module this llama does not have
    (other / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="does not fit this base model"):
        load_model(str(folder), adapter=other)
