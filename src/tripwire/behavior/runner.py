"""Run scenario tasks through Inspect and turn the logs into results tables.

:func:`run_scenarios` is what ``tripwire eval run`` calls; :func:`steering_comparison` runs one
scenario with a concept amplified, off and suppressed; :func:`behavior_audit` is the behaviour
section of ``tripwire audit``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from inspect_ai import Task
from inspect_ai import eval as inspect_eval
from inspect_ai.log import EvalLog

from tripwire.behavior.results import Row, table, to_json, write
from tripwire.errors import TripwireError, UsageError
from tripwire.stats import newcombe, newcombe_paired, wilson

DEFAULT_AUDIT_TASKS = ("oversight_subversion", "reward_hacking", "sandbagging", "jailbreak")


def task_names() -> list[str]:
    """Registered scenario task names, as ``inspect eval`` takes them (``tripwire/<name>``)."""
    from tripwire.behavior.scenarios import TASKS

    return [f"tripwire/{name}" for name in TASKS]


def resolve(names: Sequence[str]) -> list[str]:
    """Plain family names from ``names`` (``tripwire/x`` or ``x``; ``all`` = every family)."""
    from tripwire.behavior.scenarios import TASKS

    out: list[str] = []
    for raw in names:
        name = raw.split("/", 1)[1] if raw.startswith("tripwire/") else raw
        if name == "all":
            out.extend(TASKS)
        elif name in TASKS:
            out.append(name)
        else:
            raise UsageError(f"unknown scenario {raw!r}: choose from all, {', '.join(TASKS)}")
    return list(dict.fromkeys(out))


def build_tasks(
    names: Sequence[str],
    per_condition: int | None = None,
    interrogation: bool = True,
    condition: str | list[str] | None = None,
    variants: int = 1,
) -> list[Task]:
    from tripwire.behavior.scenarios import TASKS

    return [
        TASKS[n](
            condition=condition,
            interrogation=interrogation,
            per_condition=per_condition,
            variants=variants,
        )
        for n in resolve(names)
    ]


def run_scenarios(
    names: Sequence[str],
    model: str,
    model_args: dict[str, Any] | None = None,
    per_condition: int | None = None,
    log_dir: str | Path = "logs/behavior",
    interrogation: bool = True,
    condition: str | None = None,
    epochs: int = 1,
    label: str = "",
    model_roles: dict[str, str] | None = None,
    temperature: float | None = None,
    variants: int = 1,
    model_base_url: str | None = None,
) -> tuple[list[EvalLog], list[Row]]:
    """Run scenarios on ``model``; return the logs and the results rows (also written to disk).

    ``model_base_url`` points an OpenAI-compatible provider (``openai-api/<service>/<name>``,
    ``openai/<name>``) at a server, e.g. a ``tripwire guard``."""
    tasks = build_tasks(names, per_condition, interrogation, condition, variants)
    logs = inspect_eval(
        tasks,
        model=model,
        model_base_url=model_base_url,
        model_args=model_args or {},
        model_roles=model_roles,
        log_dir=str(log_dir),
        epochs=epochs,
        display="none",
        max_tasks=2,
        fail_on_error=False,
        temperature=temperature,
    )
    failed = [f"{log.eval.task}: {log.error.message}" for log in logs if log.error is not None]
    if failed:
        raise TripwireError("scenario run failed: " + " | ".join(m[:300] for m in failed))
    rows = table(logs, label=label)
    write(rows, log_dir)
    return logs, rows


def steering_comparison(
    name: str,
    model: str,
    concept: str,
    strengths: Sequence[float],
    layer: int | None = None,
    per_condition: int | None = None,
    log_dir: str | Path = "logs/behavior-steering",
    extra_args: dict[str, Any] | None = None,
) -> list[Row]:
    """One scenario with ``concept`` added at each strength (0 = off).

    Returns one row per strength x condition (and pooled over conditions, condition ``all``) of
    the outcome rate with its Wilson interval; ``diff`` is against the unsteered run of the same
    condition (the same samples: Newcombe's paired interval), so it is the steering effect.
    ``label`` names the strength.
    """
    if 0 not in strengths:
        strengths = [0.0, *strengths]
    per_strength: dict[float, list[Row]] = {}
    values: dict[float, dict[tuple[str, Any], tuple[str, int]]] = {}
    for strength in strengths:
        args = dict(extra_args or {})
        if strength != 0:
            where = "" if layer is None else f"{layer}:"
            args["steer"] = f"{concept}:{where}{strength}"
        logs, got = run_scenarios(
            [name],
            model,
            args,
            per_condition=per_condition,
            log_dir=Path(log_dir) / f"{concept}_{strength:+g}",
            interrogation=False,
        )
        values[strength] = {
            (str(smp.id), smp.epoch): (
                str((smp.metadata or {}).get("condition")),
                int(float(smp.scores["scenario_outcome"].value) >= 0.5),  # type: ignore[arg-type]
            )
            for log in logs
            for smp in log.samples or []
            if smp.scores and "scenario_outcome" in smp.scores
        }
        outcome = [r for r in got if r.measure == "misaligned"]
        n, k = sum(r.n for r in outcome), sum(r.k for r in outcome)
        pooled = Row(
            name, model, "all", False, "misaligned", n, k, k / n if n else 0.0, *wilson(k, n)
        )
        per_strength[strength] = [*outcome, pooled]
    rows: list[Row] = []
    off = {r.condition: r for r in per_strength[0]}
    for strength, cells in per_strength.items():
        tag = f"{concept}:off" if strength == 0 else f"{concept}:{strength:+g}"
        for r in cells:
            base = off.get(r.condition)
            d = dlo = dhi = None
            method = ""
            if strength != 0 and base is not None:
                pairs = [
                    (v, values[0][key][1])
                    for key, (cond, v) in values[strength].items()
                    if key in values[0] and r.condition in ("all", cond)
                ]
                if len(pairs) == r.n == base.n:
                    d, dlo, dhi = newcombe_paired(pairs)
                    method = "newcombe-paired"
                else:
                    d, dlo, dhi = newcombe(r.k, r.n, base.k, base.n)
                    method = "newcombe"
            rows.append(
                Row(
                    **{
                        **asdict(r),
                        "diff": d,
                        "diff_low": dlo,
                        "diff_high": dhi,
                        "label": tag,
                        "measure": "misaligned",
                        "diff_method": method,
                    }
                )
            )
    write(rows, log_dir, stem="steering", versus="unsteered, same samples")
    return rows


def behavior_audit(
    model: str = "tripwire/smollm2-135m",
    names: Sequence[str] = DEFAULT_AUDIT_TASKS,
    per_condition: int = 2,
    log_dir: str | Path = "tripwire-report/behavior",
    model_args: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The behaviour section of ``tripwire audit``: a subset of scenarios with a small limit.

    Returns a JSON-ready dict: the model, the scenarios, the rows, the logs' paths and a one-line
    finding per scenario (the largest treatment-minus-control difference of the outcome).
    """
    logs, rows = run_scenarios(names, model, model_args, per_condition, log_dir, interrogation=True)
    findings = []
    for name in resolve(names):
        outcome = [r for r in rows if r.task == name and r.measure == "misaligned"]
        treated = [r for r in outcome if r.diff is not None]
        worst = max(treated, key=lambda r: r.diff or 0.0, default=None)
        findings.append(
            {
                "scenario": name,
                "rate": {r.condition: r.rate for r in outcome},
                "max_diff_vs_control": None if worst is None else worst.diff,
                "ci": None if worst is None else [worst.diff_low, worst.diff_high],
                "condition": None if worst is None else worst.condition,
                "n_per_condition": per_condition,
            }
        )
    return {
        "model": model,
        "scenarios": list(resolve(names)),
        "per_condition": per_condition,
        "rows": to_json(rows),
        "findings": findings,
        "logs": [log.location for log in logs],
    }


__all__ = [
    "DEFAULT_AUDIT_TASKS",
    "behavior_audit",
    "build_tasks",
    "resolve",
    "run_scenarios",
    "steering_comparison",
    "task_names",
]
