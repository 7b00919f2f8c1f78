"""What a load checks before reading weights: the device, and an adapter's base model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tripwire.errors import ModelLoadError
from tripwire.models.preflight import check_adapter, check_device, identity, tripwire_home


def _config(folder: Path, **arch: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(arch))
    return folder


def _adapter(folder: Path, base: str | None = None, card_base: str | None = None) -> Path:
    folder.mkdir(parents=True)
    cfg = {"peft_type": "LORA"} | ({"base_model_name_or_path": base} if base else {})
    (folder / "adapter_config.json").write_text(json.dumps(cfg))
    if card_base is not None:
        (folder / "card.json").write_text(json.dumps({"base_model": card_base}))
    return folder


@pytest.mark.parametrize("device", ["tpu:9", "cuda:x", "", "CPU", "meta"])
def test_devices_that_are_refused(device: str) -> None:
    with pytest.raises(ModelLoadError, match="device"):
        check_device(device)


def test_cuda_beyond_the_machine_is_refused() -> None:
    check_device("cpu")
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ModelLoadError, match="cuda"):
        check_device(f"cuda:{n}")


def test_identity_names_a_model_by_what_it_is(tmp_path: Path) -> None:
    cache = tripwire_home() / "models" / "smollm2-135m-0123456789ab"
    snapshot = tmp_path / "hub" / "models--Org--Name" / "snapshots" / "abc"
    assert identity("smollm2-135m") == ("embedded", "smollm2-135m")
    assert identity(str(cache)) == ("embedded", "smollm2-135m")  # its dequantised copy
    assert identity(str(snapshot)) == ("hub", "Org/Name")
    assert identity("Org/Name") == ("hub", "Org/Name")
    assert identity(str(tmp_path)) == ("path", str(tmp_path.resolve()))
    assert identity(str(tmp_path / "gone")) is None


def test_an_adapter_for_another_architecture_is_refused(tmp_path: Path) -> None:
    mine = _config(tmp_path / "m", model_type="llama", hidden_size=32, num_hidden_layers=4)
    same = _config(tmp_path / "copy", model_type="llama", hidden_size=32, num_hidden_layers=4)
    other = _config(tmp_path / "o", model_type="qwen2", hidden_size=64, num_hidden_layers=4)
    check_adapter(str(mine), _adapter(tmp_path / "a1", str(same)))  # a copy of the base: fine
    check_adapter(str(mine), _adapter(tmp_path / "a2", str(tmp_path / "moved")))  # cannot tell
    check_adapter(str(mine), _adapter(tmp_path / "a3"))  # records no base
    with pytest.raises(ModelLoadError, match="qwen2, 4 layers of width 64.*llama"):
        check_adapter(str(mine), _adapter(tmp_path / "a4", str(other)))


def test_the_organism_card_names_the_base(tmp_path: Path) -> None:
    organism = _adapter(tmp_path / "org", base="/somewhere/else", card_base="smollm2-135m")
    check_adapter("smollm2-135m", organism)
    card = _adapter(tmp_path / "hub", base="Org/Other", card_base="Org/A")  # the card wins
    with pytest.raises(ModelLoadError, match="trained on Org/A, not Org/Other"):
        check_adapter("Org/Other", card)
    with pytest.raises(ModelLoadError, match="trained on Org/A, not Org/B; pass --model Org/A"):
        check_adapter("Org/B", _adapter(tmp_path / "ab", base="Org/A"))
