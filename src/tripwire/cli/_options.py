"""Options that mean the same thing in every command, declared once.

Each alias is an ``Annotated`` type; a command declares ``model: Model = DEFAULT_MODEL`` and
gets the same flag, short name and help everywhere. Commands that read a result file use
:data:`ResultFile` (``--out FILE``) beside :data:`Json` (``--json``: the result on stdout).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

# = tripwire.models.DEFAULT_MODEL, without importing torch for `tripwire --help`
DEFAULT_MODEL = "smollm2-135m"

Model = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="smollm2-135m (embedded), a model folder, a .gguf file or a cached hub id",
    ),
]
Adapter = Annotated[
    Path | None, typer.Option("--adapter", help="a PEFT (LoRA) adapter folder applied to --model")
]
Device = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1, ...")]
Dtype = Annotated[str, typer.Option("--dtype", help="float32, bfloat16 or float16")]
Seed = Annotated[
    int, typer.Option("--seed", min=0, help="random seed; the same seed gives the same run")
]
Json = Annotated[
    bool,
    typer.Option("--json", help="print the result as JSON on stdout (no table, no progress)"),
]
ResultFile = Annotated[
    Path | None,
    typer.Option(
        "--out",
        help="write the results (JSON) to this file; `--json FILE`, the old spelling, still works",
    ),
]
MaxNewTokens = Annotated[
    int, typer.Option("--max-new-tokens", min=1, help="tokens to generate per answer")
]
NRandom = Annotated[
    int, typer.Option("--n-random", min=1, help="random directions for the baseline")
]

# `--ray` alone means `--ray local` (typer has no optional option values; :mod:`._app` rewrites
# a bare `--ray` before parsing, see BARE_VALUES there).
Ray = Annotated[
    str | None,
    typer.Option(
        "--ray",
        metavar="[ADDRESS]",
        help="run one Ray task per model: alone (or `local`) a private local cluster, `auto` "
        "the cluster this machine joined, or HOST:PORT / ray://HOST:PORT",
    ),
]
RayCpus = Annotated[
    float | None, typer.Option("--ray-cpus", min=0, help="CPUs each Ray task asks for (1)")
]
RayGpus = Annotated[
    float | None,
    typer.Option("--ray-gpus", min=0, help="GPUs each Ray task asks for (1 with --device cuda)"),
]
RayRetries = Annotated[
    int, typer.Option("--ray-retries", min=0, help="retries of a task whose Ray worker died")
]

__all__ = [
    "DEFAULT_MODEL",
    "Adapter",
    "Device",
    "Dtype",
    "Json",
    "MaxNewTokens",
    "Model",
    "NRandom",
    "Ray",
    "RayCpus",
    "RayGpus",
    "RayRetries",
    "ResultFile",
    "Seed",
]
