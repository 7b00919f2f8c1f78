"""``tripwire concepts list | extract | export`` and ``tripwire steer``: the shipped concepts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tripwire.cli._app import App
from tripwire.cli._inputs import check_model, check_out_dir, check_out_file
from tripwire.cli._options import (
    DEFAULT_MODEL,
    Adapter,
    Device,
    Dtype,
    Json,
    MaxNewTokens,
    Model,
    Seed,
)
from tripwire.cli._output import out, print_json, progress
from tripwire.errors import UsageError

app = App(help="Shipped concept directions: list, extract, export.")
steer_app = App()

VectorArg = Annotated[
    Path, typer.Argument(help="a saved concept vector (path without suffix), e.g. vectors/calm")
]


@app.command("list")
def concepts_list(as_json: Json = False) -> None:
    """List the shipped concepts (--json: [{"name", "description"}, ...])."""
    from tripwire.whitebox.datasets import CONCEPTS

    if as_json:
        print_json([{"name": name, "description": desc} for name, desc in CONCEPTS.items()])
        return
    for name, desc in CONCEPTS.items():
        out.print(f"{name:18} {desc}")


@app.command("extract")
def concepts_extract(
    out_dir: Annotated[Path, typer.Option("--out", help="folder for <concept>.safetensors/.json")],
    model: Model = DEFAULT_MODEL,
    adapter: Adapter = None,
    concept: Annotated[
        list[str] | None, typer.Option("--concept", "-c", help="repeatable; default all")
    ] = None,
    seed: Seed = 0,
    device: Device = "cpu",
    dtype: Dtype = "float32",
    as_json: Json = False,
) -> None:
    """Extract concept vectors with held-out evaluation and save them."""
    from tripwire.whitebox.concepts import extract_concepts
    from tripwire.whitebox.datasets import CONCEPTS

    for c in concept or []:
        if c not in CONCEPTS:
            raise UsageError(f"unknown concept {c!r}: choose from {', '.join(CONCEPTS)}")
    check_out_dir(out_dir)
    check_model(model, adapter, device, dtype)
    with progress(not as_json) as say:
        lm = say.load(model, adapter, dtype, device)
        results = extract_concepts(lm, concept or None, seed=seed, progress=say.concept)
    for vec, _ in results:
        vec.save(out_dir / vec.name)
    rows = [ev.to_dict() | {"per_layer": None} for _, ev in results]
    if as_json:
        print_json([{k: v for k, v in r.items() if v is not None} for r in rows])
        return
    table = Table(title="concepts (held-out)")
    for col in ("concept", "layer", "AUROC", "95% CI", "random"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"],
            str(r["best_layer"]),
            f"{r['auroc']:.3f}",
            f"[{r['auroc_ci'][0]:.3f}, {r['auroc_ci'][1]:.3f}]",
            f"{r['random_baseline_auroc']:.3f}",
        )
    out.print(table)
    out.print(f"saved {len(rows)} vectors to {out_dir}")


@app.command("export")
def concepts_export(
    vector: VectorArg,
    out_file: Annotated[Path, typer.Option("--out", help="the .gguf control vector to write")],
    layer: Annotated[
        int | None,
        typer.Option(
            "--layer",
            help="export the direction read at this block instead of the concept's chosen one "
            "(llama.cpp steers blocks 1 and up; a vector saves a direction for every block)",
        ),
    ] = None,
    strength: Annotated[
        float, typer.Option("--strength", help="scale of the unit direction")
    ] = 1.0,
    model_hint: Annotated[
        str, typer.Option("--model-hint", help="llama.cpp's controlvector.model_hint")
    ] = "llama",
) -> None:
    """Export a concept's steering direction as a llama.cpp control vector (GGUF)."""
    from tripwire.whitebox.concepts import ConceptVector
    from tripwire.whitebox.steering import export_control_vector

    check_out_file(out_file)
    vec = ConceptVector.load(vector)
    block = vec.layer if layer is None else layer
    if block not in vec.directions:
        have = sorted(vec.directions)
        raise UsageError(
            f"--layer {block}: {vector} holds directions for blocks {have[0]}..{have[-1]}; "
            "pick one of those"
        )
    if block <= 0:
        hint = "" if layer is not None else " (its chosen layer); pass --layer N with N >= 1"
        raise UsageError(
            f"llama.cpp control vectors start at block 1; {vec.name} is read at block {block}{hint}"
        )
    path = export_control_vector({block: vec.directions[block]}, out_file, model_hint, strength)
    out.print(f"wrote {path} (direction.{block})")


@steer_app.command("steer")
def steer_cmd(
    prompt: Annotated[str, typer.Argument(help="the user prompt")],
    vector: Annotated[
        Path, typer.Option("--vector", help="a saved concept vector (path without suffix)")
    ],
    strength: Annotated[
        float, typer.Option("--strength", help="added along the unit direction")
    ] = 20.0,
    mode: Annotated[str, typer.Option("--mode", help="add, add_norm, ablate or clamp")] = "add",
    max_new_tokens: MaxNewTokens = 48,
    model: Model = DEFAULT_MODEL,
    adapter: Adapter = None,
    device: Device = "cpu",
    dtype: Dtype = "float32",
    as_json: Json = False,
) -> None:
    """Generate with and without a concept steered, side by side."""
    from tripwire.whitebox.concepts import ConceptVector
    from tripwire.whitebox.generation import generate
    from tripwire.whitebox.steering import MODES, steer

    if mode not in MODES:
        raise UsageError(f"unknown --mode {mode!r}: use one of {', '.join(MODES)}")
    if mode == "clamp":
        raise UsageError("--mode clamp needs bounds; use the Python API steer(..., clamp=(lo, hi))")
    vec = ConceptVector.load(vector)
    check_model(model, adapter, device, dtype)
    with progress(not as_json) as say:
        lm = say.load(model, adapter, dtype, device)
        say("generating")
        p = lm.prompt(prompt)
        before = generate(lm, [p], max_new_tokens)[0]
        with steer(lm, {vec.layer: vec.direction}, mode=mode, strength=strength):  # type: ignore[arg-type]
            after = generate(lm, [p], max_new_tokens)[0]
    result = {
        "concept": vec.name,
        "layer": vec.layer,
        "mode": mode,
        "strength": strength,
        "before": before,
        "after": after,
    }
    if as_json:
        print_json(result)
    else:
        out.print(
            f"[bold]before[/]: {before}\n[bold]after ({vec.name} {mode} {strength:+g} @ layer "
            f"{vec.layer})[/]: {after}"
        )


__all__ = ["app", "concepts_export", "concepts_extract", "concepts_list", "steer_app", "steer_cmd"]
