"""Activations of a large prompt set on Ray Data, into safetensors shards on shared storage.

``ray.data.from_items`` holds the prompts (with their index); ``map_batches`` runs them through
a pool of actors that each load the model once (``concurrency`` actors, each asking for its
CPUs/GPUs); one batch of ``shard_size`` prompts becomes one shard, written by the actor that
read it, atomically (a temporary file renamed on success), under a name fixed by the index of
its first prompt, so a batch retried after its actor died writes the same file again.

When every shard is in, ``index.json`` is written last (atomically), in the format
:func:`tripwire.whitebox.capture.capture` streams to (``layer.<L>`` and ``sample_index`` in each
shard), so :meth:`tripwire.whitebox.capture.Activations.open` reads the result: the shards in
the index's order, concatenated, are the serial capture of the same prompts. A folder without
``index.json`` is an unfinished capture.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tripwire._io import atomic_path, write_json
from tripwire.errors import TripwireError, UsageError
from tripwire.scale.ray_runner import Resources, _import_ray


class CaptureActor:
    """A Ray Data actor holding the model: one call = one batch of prompts = one shard."""

    def __init__(
        self,
        model: str,
        adapter: str | None,
        dtype: str,
        device: str,
        layers: list[int] | None,
        positions: str,
        chat: bool,
        forward_batch: int,
        out_dir: str,
    ) -> None:
        from tripwire.models.layers import resolve_layers
        from tripwire.models.loading import load_model

        self.lm = load_model(model, adapter, dtype, device)
        self.layers = resolve_layers(layers, self.lm.n_layers)
        self.positions = positions
        self.chat = chat
        self.forward_batch = forward_batch
        self.out = Path(out_dir)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch
        from safetensors.torch import save_file

        from tripwire.whitebox.capture import capture

        index = np.asarray(batch["index"], dtype=np.int64)
        texts = [str(t) for t in batch["prompt"]]
        inputs: list[Any] = [self.lm.prompt(t) for t in texts] if self.chat else texts
        acts = capture(
            self.lm,
            inputs,
            layers=self.layers,
            positions=self.positions,  # type: ignore[arg-type]
            batch_size=self.forward_batch,
        )
        owner = index if acts.sample_index is None else index[acts.sample_index]
        tensors = {
            f"layer.{i}": torch.from_numpy(np.ascontiguousarray(acts[i])) for i in acts.layers
        }
        tensors["sample_index"] = torch.from_numpy(owner.astype(np.int64))
        name = f"shard-{int(index[0]):09d}.safetensors"
        with atomic_path(self.out / name) as tmp:
            save_file(tensors, str(tmp))
        return {
            "shard": np.array([name]),
            "first": np.array([int(index[0])]),
            "n": np.array([len(index)]),
            "contiguous": np.array([bool((np.diff(index) == 1).all())]),
            "layers": np.array([json.dumps(acts.layers)]),
            "per_token": np.array([acts.sample_index is not None]),
        }


def _tripwire_cause(exc: BaseException | None) -> TripwireError | None:
    """The :class:`TripwireError` a Ray Data actor raised: the task error's ``cause``, or, for
    an actor that died in its constructor (Ray keeps only the text), the last
    ``tripwire.errors.<Name>: <message>`` line of its traceback, as that class again."""
    import re

    from tripwire import errors

    text, seen = "", 0
    while exc is not None and seen < 20:
        if isinstance(exc, TripwireError):
            return exc
        text += "\n" + str(exc)
        cause = getattr(exc, "cause", None)
        exc = cause if isinstance(cause, BaseException) else (exc.__cause__ or exc.__context__)
        seen += 1
    found = re.findall(r"tripwire\.errors\.(\w+): (.+)", text)
    if found:
        name, message = found[-1]
        cls = getattr(errors, name, None)
        if isinstance(cls, type) and issubclass(cls, TripwireError):
            return cls(message.strip())
    return None


def capture_on_ray(
    model: str,
    prompts: Sequence[str],
    out_dir: str | Path,
    layers: Sequence[int] | None = None,
    positions: str = "last",
    adapter: str | None = None,
    dtype: str = "float32",
    device: str = "cpu",
    chat: bool = True,
    shard_size: int = 4096,
    forward_batch: int = 16,
    concurrency: int = 1,
    resources: Resources | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Capture ``prompts`` on ``model`` with Ray Data into ``out_dir``; returns the index.

    Needs a connected Ray (:func:`tripwire.scale.cluster`). ``chat`` renders each prompt as a
    user turn with the model's chat template (as the white-box commands do); ``shard_size``
    prompts per batch and per shard; ``forward_batch`` prompts per forward pass inside an actor;
    ``concurrency`` actors, each with ``resources`` (CPUs, GPUs). Ray Data restarts an actor
    that died and retries its batch; the shard's file name is fixed, so a retry rewrites it.
    """
    ray = _import_ray()
    if not ray.is_initialized():
        raise TripwireError("capture_on_ray needs a connected Ray: use `with cluster(...)`")
    if not prompts:
        raise UsageError("capture needs at least one prompt")
    if positions not in ("last", "mean", "response"):
        raise UsageError(f"unknown positions {positions!r}: use last, mean or response")
    if shard_size < 1 or forward_batch < 1 or concurrency < 1:
        raise UsageError("shard size, forward batch and concurrency must each be >= 1")
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UsageError(f"--out {out} exists and is not an empty folder")
    out.mkdir(parents=True, exist_ok=True)
    res = resources or Resources()
    say = progress or (lambda message: None)
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    ds = ray.data.from_items([{"index": i, "prompt": p} for i, p in enumerate(prompts)])
    say(f"capturing {len(prompts)} prompts on {concurrency} Ray Data actor(s)")
    pipeline = ds.map_batches(
        CaptureActor,
        fn_constructor_kwargs={
            "model": model,
            "adapter": adapter,
            "dtype": dtype,
            "device": device,
            "layers": None if layers is None else list(layers),
            "positions": positions,
            "chat": chat,
            "forward_batch": forward_batch,
            "out_dir": str(out),
        },
        batch_size=shard_size,
        batch_format="numpy",
        concurrency=concurrency,
        num_cpus=res.num_cpus,
        num_gpus=res.num_gpus,
    )  # Ray Data restarts an actor that died and retries its batch
    data_log = logging.getLogger("ray.data")
    level = data_log.level
    data_log.setLevel(logging.CRITICAL)  # its traceback dumps would bury our one error line
    try:
        records = pipeline.take_all()
    except Exception as exc:  # the actor's own error (a bad layer, a model that will not load)
        raise _tripwire_cause(exc) or exc from None
    finally:
        data_log.setLevel(level)
    shards = sorted(
        {str(r["shard"]): r for r in records}.values(), key=lambda r: int(r["first"])
    )  # a retried batch reports once per success; its file is the same
    expect = 0
    for r in shards:
        if int(r["first"]) != expect or not bool(r["contiguous"]):
            raise TripwireError(
                f"the Ray capture's shards do not tile the prompts (at prompt {expect}); "
                "nothing was indexed"
            )
        expect += int(r["n"])
    if expect != len(prompts):
        raise TripwireError(f"the Ray capture covered {expect} of {len(prompts)} prompts")
    for stale in out.glob(".*.tmp"):  # temporary files of attempts that were killed
        stale.unlink(missing_ok=True)
    index = {
        "layers": json.loads(str(shards[0]["layers"])),
        "positions": positions,
        "n_samples": len(prompts),
        "per_token": bool(shards[0]["per_token"]),
        "shards": [str(r["shard"]) for r in shards],
        "model": model if adapter is None else f"{model}+{Path(adapter).name}",
        "shard_rows": [int(r["n"]) for r in shards],
        "engine": "ray.data map_batches",
    }
    write_json(out / "index.json", index)
    return index


__all__ = ["CaptureActor", "capture_on_ray"]
