"""``tripwire drift | screen | tamper``: the checks of :mod:`tripwire.checks` on a model.

Each prints its table; ``--out FILE`` keeps the full results (JSON), ``--json`` prints them on
stdout instead of the table.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tripwire.cli._app import App, JsonFileCommand
from tripwire.cli._inputs import check_in_file, check_model, check_out_file
from tripwire.cli._options import (
    DEFAULT_MODEL,
    Adapter,
    Device,
    Dtype,
    Json,
    MaxNewTokens,
    Model,
    Ray,
    RayCpus,
    RayGpus,
    RayRetries,
    ResultFile,
    Seed,
)
from tripwire.cli._output import Status, out, progress, write_result, wrote
from tripwire.cli._ray import check_ray, ray_mapper
from tripwire.errors import UsageError

app = App()


def _checkpoint_loader(
    spec: str, base: str, dtype: str, device: str, say: Status | None
) -> tuple[str, Callable[[], Any]]:
    """A ``--checkpoint``: an adapter folder (applied to the base) or a model spec, as a
    picklable loader (a :class:`~tripwire.models.loading.ModelRef`, so it can go to Ray)."""
    path = Path(spec).expanduser()
    looks_like_path = path.exists() or "/" in spec or spec.startswith(("~", "."))
    if looks_like_path and not path.exists():
        raise UsageError(f"--checkpoint {spec} does not exist; pass an adapter or model folder")
    is_adapter = path.is_dir() and (path / "adapter_config.json").is_file()
    label = path.name if looks_like_path else spec
    if say is None:  # the check before anything loads
        check_model(base if is_adapter else spec, path if is_adapter else None, device, dtype)

    from tripwire.models.loading import ModelRef

    if is_adapter:
        return label, ModelRef(base, str(path), dtype, device)
    return label, ModelRef(spec, None, dtype, device)


@app.command("drift", cls=JsonFileCommand)
def drift_cmd(
    checkpoint: Annotated[
        list[str],
        typer.Option(
            "--checkpoint",
            "-k",
            help="repeatable: an adapter folder (applied to --model) or a model spec",
        ),
    ],
    out_file: ResultFile = None,
    model: Model = DEFAULT_MODEL,
    concepts: Annotated[
        str | None, typer.Option("--concepts", help="comma-separated subset; default all 12")
    ] = None,
    n_pairs: Annotated[
        int, typer.Option("--n-pairs", min=8, help="contrast pairs per concept for the fit")
    ] = 24,
    prompts_file: Annotated[
        Path | None,
        typer.Option(
            "--prompts", help='JSONL of {"prompt": str} to read instead of the shipped set'
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=4, help="cap the evaluation prompts")
    ] = None,
    positions: Annotated[
        str, typer.Option("--positions", help="mean (over the prompt's text) or last token")
    ] = "mean",
    n_random: Annotated[
        int, typer.Option("--n-random", min=10, help="random directions for the control")
    ] = 500,
    seed: Seed = 0,
    device: Device = "cpu",
    dtype: Dtype = "float32",
    ray: Ray = None,
    ray_cpus: RayCpus = None,
    ray_gpus: RayGpus = None,
    ray_retries: RayRetries = 3,
    as_json: Json = False,
) -> None:
    """Drift of the shipped concepts from --model to each checkpoint, beside random directions.
    With --ray, each checkpoint is read by its own Ray task; the result is the same."""
    from tripwire.checks.checkpoint_drift import (
        check_concepts,
        eval_prompts,
        fit_directions,
        measure_drift,
    )
    from tripwire.whitebox.datasets import read_jsonl

    check_out_file(out_file)
    if positions not in ("mean", "last"):
        raise UsageError(f"unknown --positions {positions!r}: use mean or last")
    names = None
    if concepts is not None:
        names = [c.strip() for c in concepts.split(",") if c.strip()]
    names = check_concepts(names)
    check_model(model, None, device, dtype)
    prompts = eval_prompts(limit)
    if prompts_file is not None:
        check_in_file(prompts_file, "--prompts")
        prompts = [r["prompt"] for r in read_jsonl(prompts_file, {"prompt": str})]
        prompts = prompts[:limit] if limit is not None else prompts
        if len(prompts) < 3:
            raise UsageError(f"--prompts {prompts_file} needs at least 3 prompts")
    for c in checkpoint:  # validate every checkpoint before loading anything
        _checkpoint_loader(c, model, dtype, device, None)
    check_ray(ray, "drift --ray")
    t0 = time.perf_counter()
    with (
        progress(not as_json) as say,
        ray_mapper(ray, say, device, ray_cpus, ray_gpus, ray_retries) as mapper,
    ):
        ckpts = [_checkpoint_loader(c, model, dtype, device, say) for c in checkpoint]
        labels = [label for label, _ in ckpts]
        if len(set(labels)) != len(labels) or model in labels:
            ckpts = [(c, load) for c, (_, load) in zip(checkpoint, ckpts, strict=True)]
        base = say.load(model, None, dtype, device)
        directions = fit_directions(base, names, n_pairs=n_pairs, seed=seed, progress=say.concept)
        result = measure_drift(
            (model, base),
            ckpts,
            directions=directions,
            prompts=prompts,
            positions=positions,  # type: ignore[arg-type]
            n_random=n_random,
            seed=seed,
            progress=say,
            mapper=mapper,
        )
        del base
    result.meta.update(
        {
            "model": model,
            "checkpoint_args": list(checkpoint),
            "prompts": str(prompts_file) if prompts_file else "shipped drift evaluation set",
            "limit": limit,
            "n_pairs": n_pairs,
            "ray": ray,
            "seconds": round(time.perf_counter() - t0, 1),
        }
    )
    write_result(result.to_dict(), out_file, as_json)
    if as_json:
        return
    table = Table(title=f"drift from {model} (z = mean shift / reference std; 95% CI)")
    table.add_column("concept")
    table.add_column("layer")
    for label in result.checkpoints:
        table.add_column(f"{label}: z [CI]")
        table.add_column("random p95 / pct")
    for d in result.directions:
        cells = [d.name, str(d.layer)]
        for label in result.checkpoints:
            r = result.row(d.name, label)
            mark = " *" if r.beyond_random else ""
            cells += [
                f"{r.drift_z:+.2f} [{r.ci[0]:+.2f}, {r.ci[1]:+.2f}]{mark}",
                f"{r.random_abs_z_p95:.2f} / {r.random_percentile:.0f}",
            ]
        table.add_row(*cells)
    out.print(table)
    for o in result.overall:
        out.print(
            f"{o.checkpoint} @ layer {o.layer}: mean shift {o.relative_shift:.3f} x the reference "
            f"spread; random directions |z| median {o.random_abs_z_median:.2f}, "
            f"95th pct {o.random_abs_z_p95:.2f}"
        )
    out.print(
        f"* = |z| beyond the 95th percentile of {result.n_random} random directions at that "
        f"layer; {result.n_prompts} prompts{wrote(out_file)}"
    )


@app.command("screen", cls=JsonFileCommand)
def screen_cmd(
    data: Annotated[
        Path, typer.Option("--data", help='chat JSONL: {"messages": [{"role", "content"}, ...]}')
    ],
    concept: Annotated[str, typer.Option("--concept", "-c", help="the trait (a shipped concept)")],
    out_file: ResultFile = None,
    model: Model = DEFAULT_MODEL,
    adapter: Adapter = None,
    top: Annotated[int, typer.Option("--top", min=1, help="examples to print")] = 10,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", min=1, help="length of the model's own answers")
    ] = 48,
    n_pairs: Annotated[
        int, typer.Option("--n-pairs", min=8, help="contrast pairs for the trait direction")
    ] = 24,
    seed: Seed = 0,
    device: Device = "cpu",
    dtype: Dtype = "float32",
    as_json: Json = False,
) -> None:
    """Rank fine-tuning examples by how far they would push the model along a trait."""
    from tripwire.checks.checkpoint_drift import check_concepts, fit_directions
    from tripwire.checks.screen import read_chat_jsonl, screen

    check_out_file(out_file)
    check_concepts([concept])
    check_in_file(data, "--data")
    examples = read_chat_jsonl(data)
    check_model(model, adapter, device, dtype)
    t0 = time.perf_counter()
    with progress(not as_json) as say:
        lm = say.load(model, adapter, dtype, device)
        say(f"fitting the {concept} direction")
        direction = fit_directions(lm, [concept], n_pairs=n_pairs, seed=seed)[concept]
        result = screen(
            lm, examples, direction, max_new_tokens=max_new_tokens, seed=seed, progress=say
        )
    result.meta.update(
        {
            "data": str(data),
            "adapter": None if adapter is None else str(adapter),
            "seconds": round(time.perf_counter() - t0, 1),
        }
    )
    write_result(result.to_dict(), out_file, as_json)
    if as_json:
        return
    table = Table(
        title=f"top {min(top, len(result.scores))} of {result.n_examples}: {concept} "
        f"(layer {result.layer}, projection difference)"
    )
    for col in ("line", "score", "response"):
        table.add_column(col)
    for r in result.top(top):
        table.add_row(str(r["line"]), f"{r['score']:+.3f}", r["snippet"])
    out.print(table)
    v = result.validation
    if v is not None:
        out.print(
            f"labels found: AUROC {v['auroc']:.3f} [{v['auroc_ci'][0]:.3f}, "
            f"{v['auroc_ci'][1]:.3f}], precision@{v['n_pos']} {v['precision_at_n_pos']:.2f}; "
            f"raw projection {v['raw_projection_auroc']:.3f}; {v['n_random']} random "
            f"directions: best {v['random_baseline_auroc']:.3f}, median "
            f"{v['random_median_auroc']:.3f}"
        )
    if out_file is not None:
        out.print(f"wrote {out_file}")


@app.command("tamper", cls=JsonFileCommand)
def tamper_cmd(
    out_file: ResultFile = None,
    model: Model = DEFAULT_MODEL,
    adapter: Adapter = None,
    instructions: Annotated[
        Path | None,
        typer.Option(
            "--instructions",
            help='JSONL: {"instruction": str, "kind": "refuse"|"ordinary", '
            '"split": "train"|"val"|"test"} (default: the shipped set)',
        ),
    ] = None,
    max_new_tokens: MaxNewTokens = 48,
    limit: Annotated[
        int | None, typer.Option("--limit", min=2, help="at most N test instructions per kind")
    ] = None,
    layer_step: Annotated[
        int,
        typer.Option(
            "--layer-step", min=1, help="score candidates at every Nth layer (1 = all, slower)"
        ),
    ] = 2,
    n_val: Annotated[
        int, typer.Option("--n-val", min=2, help="validation instructions per kind for selection")
    ] = 16,
    save_direction: Annotated[
        Path | None,
        typer.Option("--save-direction", help="write the chosen unit direction (.safetensors)"),
    ] = None,
    seed: Seed = 0,
    device: Device = "cpu",
    dtype: Dtype = "float32",
    as_json: Json = False,
) -> None:
    """Guardrail tamper test: find the refusal direction, ablate it, refusal before vs after."""
    from tripwire.checks import tamper as refusal

    check_out_file(out_file)
    if save_direction is not None:
        check_out_file(save_direction, "--save-direction")
        if save_direction.suffix != ".safetensors":
            raise UsageError(
                f"--save-direction must end in .safetensors, got {save_direction.name}"
            )
    check_in_file(instructions, "--instructions")
    data = refusal.load_instructions(instructions)
    check_model(model, adapter, device, dtype)
    with progress(not as_json) as say:
        lm = say.load(model, adapter, dtype, device)
        result = refusal.tamper_test(
            lm,
            data,
            max_new_tokens=max_new_tokens,
            seed=seed,
            limit=limit,
            n_val=n_val,
            layer_step=layer_step,
            progress=say,
        )
    payload = result.to_dict()
    payload["adapter"] = None if adapter is None else str(adapter)
    payload["instructions"] = str(instructions or refusal.default_instructions_path())
    write_result(payload, out_file, as_json)
    if save_direction is not None:
        refusal.save_direction(result, save_direction)
    if as_json:
        return

    def ci(r: dict[str, Any]) -> str:
        return f"{r['rate']:.0%} [{r['ci'][0]:.0%}, {r['ci'][1]:.0%}] ({r['k']}/{r['n']})"

    table = Table(title=f"guardrail tamper test: {result.model}")
    for col in ("held-out set", "condition", "refusal rate [95% CI]", "logit refusal score"):
        table.add_column(col)
    ls = result.logit_score
    rows = [
        ("refused requests", "before", ci(result.refusal["before"]), ls["before"]["mean"]),
        ("refused requests", "direction ablated", ci(result.refusal["ablated"]),
         ls["ablated"]["mean"]),
        ("refused requests", "random direction ablated (control)",
         ci(result.refusal["random_ablated"]), ls["random_ablated"]["mean"]),
        ("ordinary instructions", "baseline", ci(result.induced["baseline"]), None),
        ("ordinary instructions", "direction added", ci(result.induced["added"]), None),
        ("ordinary instructions", "random direction added (control)",
         ci(result.induced["random_added"]), None),
    ]  # fmt: skip
    for name, cond, rate, score in rows:
        table.add_row(name, cond, rate, "" if score is None else f"{score:+.2f}")
    out.print(table)
    d = result.drop["ablated"]
    rb = result.refused_before
    kl = result.kl["ablated"]
    out.print(
        f"direction: layer {result.layer}, position {result.position} "
        f"({'passed' if result.filters_passed else 'FAILED'} the KL/induce filters); "
        f"refusal drop {d['diff']:+.0%} [{d['ci'][0]:+.0%}, {d['ci'][1]:+.0%}]; "
        f"of {rb['n']} refused before, {rb['still_refused']['k']} still refused after; "
        f"KL on ordinary {kl['mean']:.3f} (random {result.kl['random_ablated']['mean']:.3f})"
    )
    if out_file is not None or save_direction is not None:
        out.print(wrote(out_file, save_direction).removeprefix("; "))


__all__ = ["app", "drift_cmd", "screen_cmd", "tamper_cmd"]
