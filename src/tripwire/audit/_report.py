"""The report writer: run the chosen sections and write ``report.json`` and ``report.html``.

Everything is written to a staging folder inside ``out_dir`` and moved into place only when
every section has finished, so a failed run leaves ``out_dir`` as it was.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tripwire import __version__
from tripwire._io import write_text
from tripwire.audit._context import AuditContext
from tripwire.audit._html import esc, page, table
from tripwire.audit._registry import Section, applies, ordered_sections
from tripwire.errors import UsageError


def run_audit(
    lm: Any,
    out_dir: str | Path,
    sections: list[str] | None = None,
    seed: int = 0,
    limit: int | None = None,
    progress: Callable[[str], None] | None = None,
    on_section: Callable[[int, int], None] | None = None,
    trace: str | Path | None = None,
) -> dict[str, Any]:
    """Run the chosen (default: all) sections and write ``report.json`` and ``report.html``.

    ``trace`` (a recorded agent trace) adds the runtime section. Returns the report as written
    to ``report.json``: run metadata, ``sections`` (name, title, seconds, summary per section
    that ran) and ``results`` (each section's payload under its name).
    """
    out = Path(out_dir)
    chosen = ordered_sections(sections)
    if trace is not None:
        if not Path(trace).is_file():
            raise UsageError(f"trace file {trace} does not exist")
        if sections is None:
            chosen = ordered_sections([c.name for c in chosen] + ["runtime"])
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tripwire-audit-", dir=out))
    try:
        try:
            ctx = AuditContext(
                lm=lm,
                out_dir=staging,
                seed=seed,
                limit=limit,
                trace=None if trace is None else Path(trace),
                progress=progress or (lambda m: None),
            )
            report = _run(ctx, chosen, on_section)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            if created:
                shutil.rmtree(out, ignore_errors=True)
            raise
        for path in sorted(staging.rglob("*")):
            if path.is_file():
                target = out / path.relative_to(staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _run(
    ctx: AuditContext,
    chosen: list[type[Section]],
    on_section: Callable[[int, int], None] | None,
) -> dict[str, Any]:
    lm = ctx.lm
    chosen = [c for c in chosen if applies(c, ctx)]
    report: dict[str, Any] = {
        "tripwire_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "model": lm.name,
        "model_info": lm.describe(),
        "seed": ctx.seed,
        "sections": [],
        "results": {},
    }
    rendered: list[tuple[str, str, str]] = []
    summaries: list[tuple[str, str, float]] = []
    for k, cls in enumerate(chosen):
        if on_section is not None:
            on_section(k, len(chosen))
        ctx.progress(f"section {cls.name}: {cls.title}")
        t0 = time.perf_counter()
        result = cls().run(ctx)
        elapsed = time.perf_counter() - t0
        report["results"][cls.name] = result.data
        report["sections"].append(
            {
                "name": cls.name,
                "title": cls.title,
                "seconds": round(elapsed, 1),
                "summary": result.summary,
            }
        )
        rendered.append((cls.name, cls.title, result.html))
        summaries.append((cls.title, result.summary, elapsed))
    html_text = page(f"tripwire audit — {lm.name}", _header(report, summaries), rendered)
    write_text(ctx.out_dir / "report.json", json.dumps(report, indent=2) + "\n")
    write_text(ctx.out_dir / "report.html", html_text)
    return report


def _header(report: dict[str, Any], summaries: list[tuple[str, str, float]]) -> str:
    """The model table and the one-line summary of every section, above the sections."""
    info = report["model_info"]
    return (
        f"<p class=muted>tripwire {esc(__version__)} · {esc(report['created'])} · "
        f"seed {report['seed']}</p>"
        + table(
            ["model", "source", "architecture", "layers", "d_model", "parameters"],
            [
                [
                    report["model"],
                    info["source"],
                    info["architecture"],
                    info["n_layers"],
                    info["d_model"],
                    f"{info['n_parameters']:,}",
                ]
            ],
        )
        + "<div class=summary><b>Summary</b><ul>"
        + "".join(
            f"<li><b>{esc(t)}</b>: {esc(s)} <span class=muted>({e:.0f} s)</span></li>"
            for t, s, e in summaries
        )
        + "</ul></div>"
    )


__all__ = ["run_audit"]
