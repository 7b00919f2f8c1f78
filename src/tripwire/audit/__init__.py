"""``tripwire audit``: run every registered report section on one model, write HTML + JSON.

Each section lives in one file of this package and registers itself with
:func:`tripwire.report.section`; importing the package registers the built-in ones.
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
from tripwire.audit import (  # noqa: F401  (registration)
    behavior,
    checkpoint_drift,
    concepts,
    organism,
    pressure,
    probes,
    runtime,
    steering,
    tamper,
    worldmodel,
)
from tripwire.errors import UsageError
from tripwire.report.html import esc, page, table
from tripwire.report.sections import AuditContext, ordered_sections


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

    ``trace`` (a recorded agent trace) adds the runtime section. Everything is written to a
    staging folder inside ``out_dir`` and moved into place only when
    every section has finished, so a failed run leaves ``out_dir`` as it was.
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
            report = _run(lm, chosen, staging, seed, limit, progress, on_section, trace)
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
    lm: Any,
    chosen: list[Any],
    out: Path,
    seed: int,
    limit: int | None,
    progress: Callable[[str], None] | None,
    on_section: Callable[[int, int], None] | None,
    trace: str | Path | None,
) -> dict[str, Any]:
    ctx = AuditContext(lm=lm, seed=seed, limit=limit, progress=progress or (lambda m: None))
    ctx.shared["out_dir"] = out
    if trace is not None:
        ctx.shared["trace"] = Path(trace)
    # A section may declare ``applies(ctx)``; it is skipped where that is false.
    chosen = [c for c in chosen if getattr(c, "applies", lambda ctx: True)(ctx)]
    report: dict[str, Any] = {
        "tripwire_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "model": lm.name,
        "model_info": lm.describe(),
        "seed": seed,
        "sections": [],
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
        clash = set(result.data) & set(report)
        if clash:
            raise RuntimeError(f"section {cls.name} reuses report keys {sorted(clash)}")
        report.update(result.data)
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
    info = lm.describe()
    header = (
        f"<p class=muted>tripwire {esc(__version__)} · {esc(report['created'])} · seed {seed}</p>"
        + table(
            ["model", "source", "architecture", "layers", "d_model", "parameters"],
            [
                [
                    lm.name,
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
    html_text = page(f"tripwire audit — {lm.name}", header, rendered)
    write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    write_text(out / "report.html", html_text)
    return report


__all__ = ["run_audit"]
