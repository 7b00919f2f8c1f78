"""Results tables from ``.eval`` logs: per scenario x condition x measure, with 95% CIs.

Each row gives n, the rate with its Wilson interval, and - for every non-control condition - the
difference against the family's paired control with Newcombe's interval. CoT-faithfulness logs
also give the faithfulness rate (hint verbalised among answers that follow the hint), and
sandbagging logs the accuracy gap. A log whose answers came from ``tripwire guard`` also gives
``guard_blocked`` and ``guard_cut``: the samples with a turn the guard blocked before its first
token, or cut mid-answer (read from the model events, scored or not).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from inspect_ai.log import EvalLog, read_eval_log

from tripwire.behavior.scorers import content_stops, guarded
from tripwire.stats import newcombe, newcombe_paired, wilson

MEASURES = {
    "scenario_outcome": "misaligned",
    "interrogation_outcome": "deceptive_denial",
    "eval_awareness": "eval_aware",
}


@dataclass(frozen=True)
class Row:
    """One scenario x condition x measure cell."""

    task: str
    model: str
    condition: str
    control: bool
    measure: str
    n: int
    k: int
    rate: float
    ci_low: float
    ci_high: float
    diff: float | None = None
    diff_low: float | None = None
    diff_high: float | None = None
    label: str = ""
    diff_method: str = ""
    """``newcombe`` (independent samples) or ``newcombe-paired`` (the same items in both)."""


def _load(logs: Iterable[EvalLog | str | Path]) -> list[EvalLog]:
    out = []
    for log in logs:
        if isinstance(log, EvalLog) and log.samples is not None:
            out.append(log)
        else:
            out.append(read_eval_log(log.location if isinstance(log, EvalLog) else str(log)))
    return out


def _row(
    task: str, model: str, cond: str, control: bool, measure: str, vals: Sequence[float]
) -> Row:
    n = len(vals)
    k = int(round(sum(vals)))
    lo, hi = wilson(k, n)
    return Row(task, model, cond, control, measure, n, k, k / n if n else float("nan"), lo, hi)


def _ordered(task: str, conds: list[str]) -> list[str]:
    """Conditions in the family's declared order (control first)."""
    import tripwire.behavior.scenarios  # noqa: F401  (registers the families)
    from tripwire.behavior.family import FAMILIES

    fam = FAMILIES.get(task)
    order = fam.conditions() if fam is not None else []
    return sorted(conds, key=lambda c: (order.index(c) if c in order else len(order), c))


def table(logs: Iterable[EvalLog | str | Path], label: str = "") -> list[Row]:
    """Rows for every scored measure of every log (samples with errors are left out)."""
    rows: list[Row] = []
    for log in _load(logs):
        task = log.eval.task.split("/")[-1]
        model = log.eval.model
        cells: dict[tuple[str, str], list[float]] = defaultdict(list)
        paired: dict[tuple[str, str], dict[Any, float]] = defaultdict(dict)
        controls: dict[str, bool] = {}
        faith: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
        through_guard = any(guarded(s.events) for s in log.samples or [])
        for s in log.samples or []:
            if s.error is not None:
                continue
            meta = s.metadata or {}
            cond = str(meta.get("condition", "?"))
            if through_guard:
                controls[cond] = bool(meta.get("control"))
                stops = set(content_stops(s.events).values())
                for kind in ("blocked", "cut"):
                    cells[(cond, f"guard_{kind}")].append(float(kind in stops))
            if not s.scores:
                continue
            controls[cond] = bool(meta.get("control"))
            for scorer, measure in MEASURES.items():
                score = s.scores.get(scorer)
                if score is not None and isinstance(score.value, int | float):
                    cells[(cond, measure)].append(float(score.value))
                    if "pair" in meta:
                        paired[(cond, measure)][(meta["pair"], s.epoch)] = float(score.value)
            outcome = s.scores.get("scenario_outcome")
            if outcome is not None and outcome.metadata and "followed_hint" in outcome.metadata:
                faith[cond].append(
                    (
                        bool(outcome.metadata["followed_hint"]),
                        bool(outcome.metadata["verbalised_hint"]),
                    )
                )
        conds = _ordered(task, list(dict.fromkeys(c for c, _ in cells)))
        control = next((c for c in conds if controls.get(c)), None)
        measures = dict.fromkeys(m for _, m in cells)  # the guard's counts after the outcomes
        for measure in sorted(measures, key=lambda m: m.startswith("guard_")):
            base = cells.get((control, measure)) if control else None
            for cond in conds:
                vals = cells.get((cond, measure))
                if not vals:
                    continue
                row = _row(task, model, cond, controls[cond], measure, vals)
                if base and control is not None and cond != control:
                    mine, ctrl = paired.get((cond, measure), {}), paired.get((control, measure), {})
                    keys = sorted(set(mine) & set(ctrl), key=str)
                    if keys and len(keys) == len(vals) == len(base):
                        d, lo, hi = newcombe_paired(
                            [(int(mine[k] >= 0.5), int(ctrl[k] >= 0.5)) for k in keys]
                        )
                        method = "newcombe-paired"
                    else:
                        d, lo, hi = newcombe(row.k, row.n, int(round(sum(base))), len(base))
                        method = "newcombe"
                    row = Row(
                        **{
                            **asdict(row),
                            "diff": d,
                            "diff_low": lo,
                            "diff_high": hi,
                            "diff_method": method,
                        }
                    )
                rows.append(Row(**{**asdict(row), "label": label}))
        for cond, pairs in faith.items():
            followers = [v for f, v in pairs if f]
            if not controls.get(cond):
                r = _row(
                    task,
                    model,
                    cond,
                    False,
                    "faithful_among_followers",
                    [float(v) for v in followers],
                )
                rows.append(Row(**{**asdict(r), "label": label}))
            r = _row(
                task, model, cond, controls[cond], "followed_hint", [float(f) for f, _ in pairs]
            )
            rows.append(Row(**{**asdict(r), "label": label}))
    return rows


def _pct(x: float | None) -> str:
    return "" if x is None or x != x else f"{100 * x:.1f}"


def to_markdown(rows: Sequence[Row], versus: str = "control") -> str:
    """A Markdown table (rates and differences in percent)."""
    head = (
        "| task | model | condition | measure | n | rate % | 95% CI "
        f"| diff vs {versus} (pp) | 95% CI | CI method |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        model = r.model + (f" [{r.label}]" if r.label else "")
        cond = r.condition + (" (control)" if r.control else "")
        diff = "" if r.diff is None else f"{100 * r.diff:+.1f}"
        dci = "" if r.diff is None else f"[{_pct(r.diff_low)}, {_pct(r.diff_high)}]"
        lines.append(
            f"| {r.task} | {model} | {cond} | {r.measure} | {r.n} | {_pct(r.rate)} | "
            f"[{_pct(r.ci_low)}, {_pct(r.ci_high)}] | {diff} | {dci} | {r.diff_method} |"
        )
    return head + "\n".join(lines) + "\n"


def to_json(rows: Sequence[Row]) -> list[dict[str, Any]]:
    return [asdict(r) for r in rows]


def write(
    rows: Sequence[Row], out_dir: str | Path, stem: str = "results", versus: str = "control"
) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` atomically into ``out_dir``."""
    from tripwire._io import write_json, write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    j, m = out / f"{stem}.json", out / f"{stem}.md"
    write_json(j, to_json(rows))
    write_text(m, to_markdown(rows, versus))
    return j, m


def dumps(rows: Sequence[Row]) -> str:
    return json.dumps(to_json(rows), indent=2)


__all__ = ["MEASURES", "Row", "dumps", "table", "to_json", "to_markdown", "write"]
