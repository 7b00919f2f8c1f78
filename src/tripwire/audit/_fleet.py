"""Audit several models: one report folder per model under one ``--out``, and an index.

``tripwire audit --model A --model B [--ray]`` writes ``OUT/<label>/report.{json,html}`` for
each model (the single-model report, unchanged) and ``OUT/index.json``: each model's folder
and section summaries. Each model is an :class:`AuditJob` (picklable, so one Ray task per
model); each report is staged and moved into place by :func:`~tripwire.audit.run_audit`, and a
retried job first clears what a killed attempt left staged, so a model's folder holds either
its whole report or what was there before.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tripwire._io import write_json
from tripwire.audit._report import run_audit
from tripwire.errors import UsageError
from tripwire.models.loading import ModelRef

INDEX = "index.json"


@dataclass
class AuditJob:
    """One model's audit into ``out_dir`` (its own folder under the fleet's ``--out``)."""

    label: str
    model: ModelRef
    out_dir: str
    sections: list[str] | None = None
    seed: int = 0
    limit: int | None = None
    trace: str | None = None


def audit_job(job: AuditJob, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the audit of one model; its entry in ``index.json``."""
    target = Path(job.out_dir)
    for stale in target.glob(".tripwire-audit-*"):  # staged by a killed attempt
        shutil.rmtree(stale, ignore_errors=True)
    report = run_audit(
        job.model(), target, sections=job.sections, seed=job.seed, limit=job.limit,
        progress=progress, trace=job.trace,
    )  # fmt: skip
    return {
        "model": report["model"],
        "spec": job.model.spec,
        "folder": target.name,
        "sections": [
            {"name": s["name"], "title": s["title"], "summary": s["summary"]}
            for s in report["sections"]
        ],
    }


def model_labels(specs: Sequence[str]) -> list[str]:
    """A folder name per model spec: the folder's or file's name (``smollm2-135m`` as it is),
    characters outside ``[A-Za-z0-9._-]`` as ``_``; two models with one name are an error."""
    labels = [re.sub(r"[^A-Za-z0-9._-]", "_", Path(s).name or s).lstrip(".") or "model"
              for s in specs]  # fmt: skip
    seen: dict[str, str] = {}
    for spec, label in zip(specs, labels, strict=True):
        if label in seen:
            raise UsageError(
                f"--model {seen[label]} and --model {spec} would both be reported in "
                f"{label}/: audit them in separate --out folders"
            )
        seen[label] = spec
    return labels


def write_index(out_dir: Path, entries: list[dict[str, Any]], meta: dict[str, Any]) -> dict:
    """``OUT/index.json``: the run's settings and each model's entry, written atomically."""
    index = {**meta, "models": entries}
    write_json(out_dir / INDEX, index)
    return index


__all__ = ["INDEX", "AuditJob", "audit_job", "model_labels", "write_index"]
