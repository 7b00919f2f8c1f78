"""``tripwire probe defection | plausibility | eval-awareness``: linear probes at every layer.

Each prints a table of every layer beside its random-direction baseline; ``--out FILE`` keeps
the full results (JSON), ``--json`` prints them on stdout instead of the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tripwire.cli._app import App, JsonFileCommand
from tripwire.cli._inputs import check_device, check_in_file, check_model, check_out_file
from tripwire.cli._options import (
    DEFAULT_MODEL,
    Adapter,
    Device,
    Dtype,
    Json,
    Model,
    NRandom,
    Ray,
    RayCpus,
    RayGpus,
    RayRetries,
    ResultFile,
    Seed,
)
from tripwire.cli._output import out, progress, write_result, wrote
from tripwire.cli._ray import check_ray, ray_mapper
from tripwire.errors import UsageError

app = App(help="Probes fit from generic contrast pairs, evaluated on your prompts.")


def _method_help() -> str:
    from tripwire.checks.defection.methods import METHODS

    return (
        "auto (the leaderboard's default: diffing with a base, else the model alone) or one of "
        + ", ".join(METHODS)
    )


Adapters = Annotated[
    list[Path] | None,
    typer.Option(
        "--adapter",
        help="a PEFT (LoRA) adapter folder applied to --model, diffed against it; repeat it to "
        "probe several adapters (one result each; one Ray task each with --ray)",
    ),
]


def _jobs(
    model: str, adapters: list[Path], base: str | None, evals: list[Path], method: str,
    null: bool, n_random: int, seed: int, device: str, dtype: str,
) -> list[Any]:  # fmt: skip
    """One :class:`DefectionJob` per adapter (or one for --model alone), every input checked
    before any model is loaded."""
    from tripwire.checks.defection.probe import DefectionJob, load_eval_rows, resolve_method
    from tripwire.models.loading import ModelRef

    if adapters and base is not None:
        raise UsageError("give --adapter (diffed against --model) or --base, not both")
    n = max(1, len(adapters))
    if len(evals) not in (1, n):
        raise UsageError(
            f"{len(evals)} --eval files for {n} adapters: give one for all, or one per --adapter "
            "in the same order"
        )
    for f in evals:
        check_in_file(f, "--eval")
    rows = [load_eval_rows(f) for f in evals]
    resolve_method(method, bool(adapters) or base is not None)
    check_model(model, None, device, dtype)
    for a in adapters:
        check_model(model, a, device, dtype)
    if base is not None:
        check_model(base, None, device, dtype)
    clean = base or (model if adapters else None)
    ref = None if clean is None else ModelRef(clean, None, dtype, device)
    names = [a.name for a in adapters]
    labels = names if len(set(names)) == len(names) else [str(a) for a in adapters]
    specs = [
        (lab, ModelRef(model, str(a), dtype, device))
        for lab, a in zip(labels, adapters, strict=True)
    ]
    specs = specs or [(model, ModelRef(model, None, dtype, device))]
    return [
        DefectionJob(lab, m, rows[k if len(rows) > 1 else 0], ref, method, n_random, seed, null)
        for k, (lab, m) in enumerate(specs)
    ]


@app.command("defection", cls=JsonFileCommand)
def probe_defection_cmd(
    eval_files: Annotated[
        list[Path],
        typer.Option(
            "--eval",
            help='JSONL: {"prompt": str, "label": 0|1, "system"?: str, "group"?: str} '
            "(1 = the model defects, or the trigger is present); with several --adapter, one "
            "file for all or one per adapter in the same order",
        ),
    ],
    out_file: ResultFile = None,
    model: Model = DEFAULT_MODEL,
    adapter: Adapters = None,
    base: Annotated[
        str | None,
        typer.Option(
            "--base",
            help="the clean base model, for diffing a fully fine-tuned --model (with --adapter "
            "the base is --model itself)",
        ),
    ] = None,
    method: Annotated[str, typer.Option("--method", help="see `tripwire probe methods`")] = "auto",
    null: Annotated[
        bool,
        typer.Option(help="with a base, also run the method on the clean base model (the null)"),
    ] = True,
    n_random: NRandom = 1000,
    seed: Seed = 0,
    device: Device = "cpu",
    dtype: Dtype = "float32",
    ray: Ray = None,
    ray_cpus: RayCpus = None,
    ray_gpus: RayGpus = None,
    ray_retries: RayRetries = 3,
    as_json: Json = False,
) -> None:
    """Score the eval prompts with a defection detector before anything reaches a user; every
    figure beside its control (random directions, neutral 1% threshold, benign formats).
    Several --adapter: one result per adapter (`adapters` in the JSON), one Ray task each with
    --ray; the figures are the serial run's."""
    from tripwire.checks.defection.probe import defection_job

    check_out_file(out_file)
    jobs = _jobs(
        model, list(adapter or []), base, list(eval_files), method, null, n_random, seed,
        device, dtype,
    )  # fmt: skip
    check_ray(ray, "probe defection --ray")
    evals = [str(eval_files[k if len(eval_files) > 1 else 0]) for k in range(len(jobs))]
    with (
        progress(not as_json) as say,
        ray_mapper(ray, say, device, ray_cpus, ray_gpus, ray_retries) as mapper,
    ):
        if mapper is not None:
            results = mapper(defection_job, jobs, [j.label for j in jobs])
        else:
            results = []
            for k, job in enumerate(jobs):
                say.step(k, len(jobs))
                results.append(defection_job(job, say))
    for r, f in zip(results, evals, strict=True):
        r["eval_file"] = f
    if len(results) == 1 and len(adapter or []) <= 1:
        data = results[0]
    else:
        data = {"model": model, "method": results[0]["method"], "ray": ray, "adapters": results}
    write_result(data, out_file, as_json)
    if as_json:
        return
    if "adapters" in data:
        _sweep_table(data)
    else:
        _one_table(data)
    if out_file is not None:
        out.print(f"wrote {out_file}")


def _one_table(r: dict[str, Any]) -> None:
    if r["per_layer"]:
        table = Table(title=f"defection ({r['method']}): {r['model']}, per layer (reading only)")
        for col in ("layer", "AUROC"):
            table.add_column(col)
        for row in r["per_layer"]:
            mark = " *" if row["layer"] == r["best_layer"] else ""
            table.add_row(f"{row['layer']}{mark}", f"{row['auroc']:.3f}")
        out.print(table)
    lo, hi = r["auroc_ci"]
    rnd = r["random_baseline_auroc"]
    out.print(
        f"{r['method']} ({r['reads']}): AUROC {r['auroc']:.3f} [{lo:.3f}, {hi:.3f}]; "
        f"random directions (cross-fitted best of {r['n_random']}) "
        f"{'—' if rnd is None else f'{rnd:.3f}'}; recall at the neutral 1% threshold "
        f"{r['recall_at_1pct_fpr'] or 0:.2f}; "
        f"false positives on benign formats {r['format_fpr']:.1%}"
    )
    if r["null"] is not None:
        out.print(
            f"null (clean base): AUROC {r['null']['auroc']:.3f}, "
            f"flags {r['null']['flagged_rate']:.1%} of the eval prompts"
        )


def _sweep_table(data: dict[str, Any]) -> None:
    table = Table(title=f"defection ({data['method']}) on {data['model']}: one row per adapter")
    for col in ("adapter", "AUROC [CI]", "random", "recall@1%", "format FPR", "null flags"):
        table.add_column(col)
    for r in data["adapters"]:
        lo, hi = r["auroc_ci"]
        rnd = r["random_baseline_auroc"]
        table.add_row(
            str(r["adapter"] or r["model"]), f"{r['auroc']:.3f} [{lo:.2f}, {hi:.2f}]",
            "—" if rnd is None else f"{rnd:.3f}", f"{r['recall_at_1pct_fpr'] or 0:.2f}",
            f"{r['format_fpr']:.1%}",
            "—" if r["null"] is None else f"{r['null']['flagged_rate']:.1%}",
        )  # fmt: skip
    out.print(table)


@app.command("methods")
def probe_methods_cmd(as_json: Json = False) -> None:
    """The defection-detection methods, what each reads and whether it needs the base model."""
    import json

    from tripwire.checks.defection.methods import METHODS
    from tripwire.checks.defection.probe import DEFAULT_OWN, DEFAULT_WITH_BASE

    rows: list[dict[str, Any]] = [
        {"name": m.name, "needs_base": m.needs_base, "reads": m.reads,
         "description": m.description,
         "default": m.name in (DEFAULT_WITH_BASE, DEFAULT_OWN)}
        for m in METHODS.values()
    ]  # fmt: skip
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table(title="defection methods (defaults marked *)")
    for col in ("method", "base", "reads", "what"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["name"] + (" *" if r["default"] else ""), "yes" if r["needs_base"] else "no",
            r["reads"], r["description"],
        )  # fmt: skip
    out.print(table)


@app.command("leaderboard")
def probe_leaderboard_cmd(
    zoo: Annotated[Path, typer.Option("--zoo", help="a folder built by `tripwire organism zoo`")],
    out_file: Annotated[Path, typer.Option("--out", help="the leaderboard JSON to write")] = Path(
        "leaderboard.json"
    ),
    markdown: Annotated[
        Path | None, typer.Option("--markdown", help="also write the tables as Markdown")
    ] = None,
    final: Annotated[
        bool,
        typer.Option(
            "--final", help="also score the final held-out organisms with the frozen defaults"
        ),
    ] = False,
    dev_board: Annotated[
        Path | None,
        typer.Option(
            "--dev-board",
            help="with --final: take the dev, benign and null figures from this earlier "
            "leaderboard JSON instead of re-reading those organisms",
        ),
    ] = None,
    seed: Seed = 0,
    device: Device = "cpu",
    as_json: Json = False,
) -> None:
    """Every defection method on every zoo organism: leave one organism out, nulls, final set."""
    from tripwire.checks.defection.leaderboard import render_markdown, run_leaderboard

    if not zoo.is_dir():
        raise UsageError(f"--zoo {zoo} is not a folder: build one with `tripwire organism zoo`")
    check_out_file(out_file)
    check_out_file(markdown, "--markdown")
    check_device(device)
    previous = None
    if dev_board is not None:
        import json

        from tripwire.checks.defection.leaderboard import check_dev_board

        if not final:
            raise UsageError("--dev-board is only for scoring the final organisms: add --final")
        check_in_file(dev_board, "--dev-board")
        try:
            previous = json.loads(dev_board.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UsageError(
                f"--dev-board {dev_board} is not JSON ({e}): pass a leaderboard"
            ) from e
        check_dev_board(previous)
    with progress(not as_json) as say:
        board = run_leaderboard(
            zoo, include_final=final, device=device, seed=seed, progress=say, dev_board=previous
        )
    write_result(board, out_file, as_json)
    if markdown is not None:
        from tripwire._io import write_text

        write_text(markdown, render_markdown(board))
    if not as_json:
        out.print(render_markdown(board).split("\n## Leave")[0])
        out.print(f"defaults: {board['default']}; wrote {out_file}")


@app.command("plausibility", cls=JsonFileCommand)
def probe_plausibility_cmd(
    out_file: ResultFile = None,
    model: Model = DEFAULT_MODEL,
    adapter: Adapter = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=8, help="use a subset of the 124 frames")
    ] = None,
    n_random: NRandom = 100,
    seed: Seed = 0,
    device: Device = "cpu",
    dtype: Dtype = "float32",
    as_json: Json = False,
) -> None:
    """Event plausibility (plausible / improbable / impossible) probes at every layer."""
    from tripwire.checks.plausibility import probe_plausibility

    check_out_file(out_file)
    check_model(model, adapter, device, dtype)
    with progress(not as_json) as say:
        lm = say.load(model, adapter, dtype, device)
        result = probe_plausibility(lm, limit=limit, n_random=n_random, seed=seed, progress=say)
    data = result.to_dict()
    data["adapter"] = None if adapter is None else str(adapter)
    write_result(data, out_file, as_json)
    if as_json:
        return
    names = list(result.pairs)
    table = Table(title=f"plausibility probes (held-out frames): {result.model}")
    table.add_column("layer")
    for n in names:
        table.add_column(n.replace("_vs_", " vs "))
    table.add_column("random (mean)")
    table.add_column("train CV")
    for r in result.per_layer:
        mark = " *" if r["layer"] == result.chosen_layer else ""
        table.add_row(
            f"{r['layer']}{mark}",
            *(f"{r[n]['auroc']:.3f}" for n in names),
            f"{r['random_baseline_auroc']:.3f}",
            f"{r['cv_auroc']:.3f}",
        )
    out.print(table)
    best = Table(title=f"layer {result.chosen_layer} (chosen by CV on the training frames)")
    for col in ("pair", "probe AUROC [95% CI]", "random", "log-prob AUROC [95% CI]", "paired acc"):
        best.add_column(col)
    for n, p in result.pairs.items():
        best.add_row(
            n.replace("_vs_", " vs "),
            f"{p['auroc']:.3f} [{p['auroc_ci'][0]:.3f}, {p['auroc_ci'][1]:.3f}]",
            f"{p['random_baseline_auroc']:.3f}",
            f"{p['logprob_auroc']:.3f} [{p['logprob_auroc_ci'][0]:.3f}, "
            f"{p['logprob_auroc_ci'][1]:.3f}]",
            f"{p['paired_accuracy']:.2f} (log-prob {p['logprob_paired_accuracy']:.2f})",
        )
    out.print(best)
    t = result.three_way
    out.print(
        f"3-way accuracy {t['accuracy']:.2f} [{t['accuracy_ci'][0]:.2f}, "
        f"{t['accuracy_ci'][1]:.2f}] (log-prob alone {t['logprob_accuracy']:.2f}, chance 0.33, "
        f"n={t['n_test']}){wrote(out_file)}"
    )


def _detector_meta(save: Path) -> Path:
    """The ``.json`` a saved detector writes beside its ``.safetensors``."""
    return (save.with_suffix("") if save.suffix == ".safetensors" else save).with_suffix(".json")


@app.command("eval-awareness", cls=JsonFileCommand)
def probe_eval_awareness_cmd(
    out_file: ResultFile = None,
    model: Model = DEFAULT_MODEL,
    adapter: Adapter = None,
    save: Annotated[
        Path | None,
        typer.Option(
            "--save",
            help="write the chosen layer's detector (.safetensors + .json beside it) for "
            "-M detector; --out must name another file than that .json",
        ),
    ] = None,
    position: Annotated[
        str,
        typer.Option(
            "--position",
            help="reply (mean over a neutral reply, as the behaviour suite reads) "
            "or prompt (last prompt token)",
        ),
    ] = "reply",
    limit: Annotated[
        int | None, typer.Option("--limit", min=8, help="use a subset of the 96 requests")
    ] = None,
    n_random: NRandom = 100,
    seed: Seed = 0,
    device: Device = "cpu",
    dtype: Dtype = "float32",
    as_json: Json = False,
) -> None:
    """Evaluation-vs-deployment framing probe at every layer; held-out requests and templates."""
    from tripwire.checks.eval_awareness import probe_eval_awareness

    check_out_file(out_file)
    if position not in ("reply", "prompt"):
        raise UsageError(f"unknown --position {position!r}: use reply or prompt")
    if save is not None:
        check_out_file(save, "--save")
        if not save.parent.is_dir():
            raise UsageError(f"--save {save}: folder {save.parent} does not exist")
        meta = _detector_meta(save)
        check_out_file(meta, "--save")
        if out_file is not None and meta.resolve() == out_file.resolve():
            raise UsageError(
                f"--save {save} writes its parameters to {meta}, the same file as the results "
                "(--out); give --out another name"
            )
    check_model(model, adapter, device, dtype)
    with progress(not as_json) as say:
        lm = say.load(model, adapter, dtype, device)
        result = probe_eval_awareness(
            lm,
            position=position,  # type: ignore[arg-type]
            limit=limit,
            n_random=n_random,
            seed=seed,
            progress=say,
        )
    data = result.to_dict()
    data["adapter"] = None if adapter is None else str(adapter)
    base = None
    if save is not None:
        base = result.save_detector(save)
        data["saved_detector"] = f"{base}:{result.chosen_layer}"
    write_result(data, out_file, as_json)
    if as_json:
        return
    table = Table(
        title=f"eval-vs-deployment probe (held-out requests and templates): {result.model}"
    )
    for col in (
        "layer",
        "diff-of-means",
        "logistic",
        "random (best of N)",
        "train CV (dm / logistic)",
    ):
        table.add_column(col)
    for r in result.per_layer:
        mark = " *" if r["layer"] == result.chosen_layer else ""
        table.add_row(
            f"{r['layer']}{mark}",
            f"{r['auroc']:.3f}",
            f"{r['logistic_auroc']:.3f}",
            f"{r['random_baseline_auroc']:.3f}",
            f"{r['cv_auroc']:.3f} / {r['logistic_cv_auroc']:.3f}",
        )
    out.print(table)
    lo, hi = result.auroc_ci
    text = result.baselines["text_tfidf"]
    out.print(
        f"layer {result.chosen_layer} ({result.detector_kind}, chosen by CV on the training "
        f"groups): AUROC {result.auroc:.3f} [{lo:.3f}, {hi:.3f}], best of {result.n_random} "
        f"random directions {result.random_baseline_auroc:.3f}, TF-IDF text baseline "
        f"{text['auroc']:.3f} [{text['auroc_ci'][0]:.3f}, {text['auroc_ci'][1]:.3f}]"
        f"{wrote(out_file)}"
    )
    if base is not None:
        out.print("saved the detector; score every reply in a behaviour run with:")
        out.print(f"  -M detector={base}:{result.chosen_layer}", soft_wrap=True, highlight=False)


__all__ = [
    "app",
    "probe_defection_cmd",
    "probe_eval_awareness_cmd",
    "probe_plausibility_cmd",
]
