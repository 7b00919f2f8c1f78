"""``tripwire audit`` (every report section on one model) and ``tripwire info`` (the model)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from tripwire.cli._app import App, Command, needs_extra
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
    Seed,
)
from tripwire.cli._output import out, print_json, progress
from tripwire.cli._ray import check_ray, ray_mapper
from tripwire.errors import UsageError

app = App()

SECTIONS_HELP = "comma-separated subset of the report sections: {names}"


def section_names() -> list[str]:
    """Every registered report section, default and opt-in, in report order."""
    from tripwire.audit import section_names as registry

    return list(registry())


class AuditCommand(Command):
    """Lists the section names in ``--sections``'s help, read from the audit registry only
    when ``audit`` itself runs or shows its help (importing it costs every other command)."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for p in params:
            if p.name == "sections" and p.help == SECTIONS_HELP:
                p.help = SECTIONS_HELP.format(names=", ".join(section_names()))
        return params


Models = Annotated[
    list[str] | None,
    typer.Option(
        "--model",
        "-m",
        help="smollm2-135m (embedded), a model folder, a .gguf file or a cached hub id; repeat "
        "it to audit several models (OUT/<name>/ each, OUT/index.json; one Ray task each with "
        "--ray)",
    ),
]


@app.command(cls=AuditCommand)
def audit(
    model: Models = None,
    adapter: Adapter = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="folder for report.html, report.json, vectors/")
    ] = Path("tripwire-report"),
    sections: Annotated[str | None, typer.Option("--sections", help=SECTIONS_HELP)] = None,
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
    seed: Seed = 0,
    device: Device = "cpu",
    dtype: Dtype = "float32",
    ray: Ray = None,
    ray_cpus: RayCpus = None,
    ray_gpus: RayGpus = None,
    ray_retries: RayRetries = 3,
    as_json: Json = False,
) -> None:
    """Audit a model: concepts, probes, pressure traces, steering -> report.html + report.json.
    Several --model (or --ray): one report folder each under --out, and OUT/index.json."""
    from tripwire.audit import ordered_sections, run_audit

    names = None if sections is None else [s.strip() for s in sections.split(",") if s.strip()]
    ordered_sections(names)  # validate before loading anything
    check_out_dir(out_dir)
    if trace is not None:
        check_in_file(trace, "--trace")
        with needs_extra("runtime", "audit --trace"):
            from tripwire.runtime.watch import read_trace
        read_trace(trace)  # a malformed trace fails now, not after the other sections
    models = model or [DEFAULT_MODEL]
    if len(models) > 1 or ray is not None:
        _audit_fleet(models, adapter, out_dir, names, limit, trace, seed, device, dtype,
                     (ray, ray_cpus, ray_gpus, ray_retries), as_json)  # fmt: skip
        return
    check_model(models[0], adapter, device, dtype)
    t0 = time.perf_counter()
    with progress(not as_json) as say:
        lm = say.load(models[0], adapter, dtype, device)
        report = run_audit(
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
        print_json(report)
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


def _audit_fleet(
    models: list[str], adapter: Path | None, out_dir: Path, names: list[str] | None,
    limit: int | None, trace: Path | None, seed: int, device: str, dtype: str,
    ray_opts: tuple[str | None, float | None, float | None, int], as_json: bool,
) -> None:  # fmt: skip
    """Several models (or one on Ray): OUT/<label>/ each, then OUT/index.json."""
    from tripwire.audit._fleet import AuditJob, audit_job, model_labels, write_index
    from tripwire.models.loading import ModelRef

    if adapter is not None and len(models) > 1:
        raise UsageError("--adapter applies to one --model: audit several models without it")
    labels = model_labels(models)
    for m in models:
        check_model(m, adapter, device, dtype)
    ray, cpus, gpus, retries = ray_opts
    check_ray(ray, "audit --ray")
    jobs = [
        AuditJob(lab, ModelRef(m, None if adapter is None else str(adapter), dtype, device),
                 str(out_dir / lab), names, seed, limit, None if trace is None else str(trace))
        for m, lab in zip(models, labels, strict=True)
    ]  # fmt: skip
    t0 = time.perf_counter()
    with progress(not as_json) as say, ray_mapper(ray, say, device, cpus, gpus, retries) as mapper:
        if mapper is not None:
            entries = mapper(audit_job, jobs, labels)
        else:
            entries = []
            for k, job in enumerate(jobs):
                say.step(k, len(jobs))
                entries.append(audit_job(job, say))
    meta = {"sections": names, "seed": seed, "limit": limit, "ray": ray,
            "seconds": round(time.perf_counter() - t0, 1)}  # fmt: skip
    index = write_index(out_dir, entries, meta)
    if as_json:
        print_json(index)
        return
    table = Table(title=f"tripwire audit: {len(entries)} models")
    for col in ("model", "folder", "section", "summary"):
        table.add_column(col)
    for e in entries:
        for k, s in enumerate(e["sections"]):
            first = k == 0
            table.add_row(e["model"] if first else "", e["folder"] if first else "",
                          s["title"], s["summary"])  # fmt: skip
    out.print(table)
    out.print(
        f"wrote {len(entries)} reports and {out_dir / 'index.json'} in {meta['seconds']:.0f} s"
    )


@app.command()
def info(
    model: Model = DEFAULT_MODEL,
    adapter: Adapter = None,
    device: Device = "cpu",
    dtype: Dtype = "float32",
    as_json: Json = False,
) -> None:
    """Load a model from local files and describe it (layers, width, where blocks live)."""
    check_model(model, adapter, device, dtype)
    with progress(not as_json) as say:
        lm = say.load(model, adapter, dtype, device)
    desc = lm.describe()
    if as_json:
        print_json(desc)
    else:
        for k, v in desc.items():
            out.print(f"{k:14} {v}")


__all__ = ["app", "audit", "info", "section_names"]
