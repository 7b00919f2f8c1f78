"""``tripwire capture``: a prompt set's activations into safetensors shards, here or on Ray Data.

Both write the format :func:`tripwire.whitebox.capture.capture` streams to (``index.json`` plus
``shard-*.safetensors``), read back by ``Activations.open``; with ``--ray`` a pool of Ray Data
actors that each hold the model writes one shard per batch (:mod:`tripwire.scale.data_capture`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tripwire.cli._app import App
from tripwire.cli._inputs import check_in_file, check_model, check_out_dir
from tripwire.cli._options import (
    DEFAULT_MODEL,
    Adapter,
    Device,
    Dtype,
    Json,
    Model,
    Ray,
    RayCpus,
    RayGpus,
    RayRetries,
)
from tripwire.cli._output import out, print_json, progress
from tripwire.cli._ray import check_ray
from tripwire.errors import UsageError

app = App()


def _layers(spec: str | None) -> list[int] | None:
    if spec is None:
        return None
    try:
        return [int(x) for x in spec.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--layers {spec!r}: give comma-separated block indices") from None


@app.command("capture")
def capture_cmd(
    prompts_file: Annotated[
        Path, typer.Option("--prompts", help='JSONL of {"prompt": str}, one prompt a line')
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", help="new (or empty) folder: index.json + shards")
    ],
    model: Model = DEFAULT_MODEL,
    adapter: Adapter = None,
    layers: Annotated[
        str | None, typer.Option("--layers", help="comma-separated blocks (default: all)")
    ] = None,
    positions: Annotated[
        str, typer.Option("--positions", help="last, mean or response (every user-text token)")
    ] = "last",
    shard_size: Annotated[int, typer.Option("--shard-size", min=1, help="prompts a shard")] = 4096,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="prompts a forward pass")
    ] = 16,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, help="Ray Data actors holding the model")
    ] = 1,
    device: Device = "cpu",
    dtype: Dtype = "float32",
    ray: Ray = None,
    ray_cpus: RayCpus = None,
    ray_gpus: RayGpus = None,
    ray_retries: RayRetries = 3,
    as_json: Json = False,
) -> None:
    """Capture the residual stream of a prompt set (rendered as user turns) into shards."""
    from tripwire.whitebox.datasets import read_jsonl

    check_in_file(prompts_file, "--prompts")
    prompts = [r["prompt"] for r in read_jsonl(prompts_file, {"prompt": str})]
    if not prompts:
        raise UsageError(f"--prompts {prompts_file} holds no prompts")
    if positions not in ("last", "mean", "response"):
        raise UsageError(f"unknown --positions {positions!r}: use last, mean or response")
    chosen = _layers(layers)
    check_out_dir(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise UsageError(f"--out {out_dir} exists and is not an empty folder")
    check_model(model, adapter, device, dtype)
    check_ray(ray, "capture --ray")
    with progress(not as_json) as say:
        if ray is None:
            from tripwire.models.layers import resolve_layers
            from tripwire.whitebox.capture import capture

            lm = say.load(model, adapter, dtype, device)
            picked = resolve_layers(chosen, lm.n_layers)  # checked before the first shard
            say(f"capturing {len(prompts)} prompts")
            capture(
                lm, [lm.prompt(p) for p in prompts], layers=picked,
                positions=positions,  # type: ignore[arg-type]
                batch_size=batch_size, out_dir=out_dir, shard_samples=shard_size,
                progress=lambda done: say.step(done, len(prompts)),
            )  # fmt: skip
            index: dict[str, Any] = json.loads((out_dir / "index.json").read_text())
            index["engine"] = "capture"
        else:
            from tripwire.scale.data_capture import capture_on_ray
            from tripwire.scale.ray_runner import Resources, cluster

            say(f"connecting to Ray ({ray})")
            with cluster(ray):
                index = capture_on_ray(
                    model, prompts, out_dir, layers=chosen, positions=positions,
                    adapter=None if adapter is None else str(adapter), dtype=dtype,
                    device=device, shard_size=shard_size, forward_batch=batch_size,
                    concurrency=concurrency,
                    resources=Resources.for_device(device, ray_cpus, ray_gpus, ray_retries),
                    progress=say,
                )  # fmt: skip
    if as_json:
        print_json(index)
        return
    out.print(
        f"{index['n_samples']} prompts, layers {index['layers']}, {index['positions']}: "
        f"{len(index['shards'])} shards; wrote {out_dir}"
    )


__all__ = ["app", "capture_cmd"]
