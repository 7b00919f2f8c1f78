"""Audit section (opt-in): a subset of the behaviour scenarios on the audited model.

Runs the Inspect scenarios of :mod:`tripwire.behavior` through the ``tripwire`` provider with
``--limit`` samples per condition (default 2); the ``.eval`` logs land in ``behavior/`` beside
the report, openable with ``inspect view``. Not part of the default audit (it takes minutes);
ask for it with ``tripwire audit --sections behavior --limit N``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from tripwire.audit._context import AuditContext
from tripwire.audit._html import esc, table
from tripwire.audit._registry import SectionResult, section


def _fmt_ci(ci: Any) -> str:
    if not ci or ci[0] is None:
        return "—"
    return f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"


#: Samples per condition when ``--limit`` is not given.
PER_CONDITION = 2


@section
class BehaviorSection:
    name: ClassVar[str] = "behavior"
    title: ClassVar[str] = "Behaviour scenarios"
    order: ClassVar[int] = 50
    default: ClassVar[bool] = False

    def run(self, ctx: AuditContext) -> SectionResult:
        from tripwire.behavior.provider import SCRIPTED
        from tripwire.behavior.runner import DEFAULT_AUDIT_TASKS, behavior_audit

        out = ctx.out_dir
        lm = ctx.lm
        # Scripted policies take no model args; local models get a short generation budget.
        model_args: dict[str, Any] = {} if lm.spec in SCRIPTED else {"max_new_tokens": 64}
        if lm.adapter is not None:
            model_args["adapter"] = lm.adapter
        # --limit sets the samples per condition here (it does not cap a larger default).
        per_condition = ctx.limit or PER_CONDITION
        ctx.progress(f"behaviour: {len(DEFAULT_AUDIT_TASKS)} scenarios x {per_condition}/condition")
        result = behavior_audit(
            f"tripwire/{lm.spec}",
            DEFAULT_AUDIT_TASKS,
            per_condition=per_condition,
            log_dir=out / "behavior",
            model_args=model_args,
        )
        # Logs were written under the staging folder; record them relative to the report.
        result["logs"] = [str(Path(p).resolve().relative_to(out.resolve())) for p in result["logs"]]
        rows = []
        for f in result["findings"]:
            rates = ", ".join(f"{c}: {r:.2f}" for c, r in sorted(f["rate"].items()))
            diff = f["max_diff_vs_control"]
            rows.append(
                [
                    f["scenario"],
                    rates,
                    "—" if diff is None else f"{diff:+.2f}",
                    _fmt_ci(f["ci"]),
                    f["condition"] or "—",
                    f["n_per_condition"],
                ]
            )
        html = (
            "<p>Each scenario is an Inspect task with a paired control condition; the outcome "
            "is checked deterministically from the sandbox's files and tool calls. Rates per "
            "condition, and the largest difference against the control with its 95% interval. "
            "Logs (open with <code>inspect view</code>): "
            + ", ".join(f"<code>{esc(p)}</code>" for p in result["logs"])
            + "</p>"
            + table(
                [
                    "scenario",
                    "misaligned rate by condition",
                    "max diff vs control",
                    "95% CI",
                    "condition",
                    "n / condition",
                ],
                rows,
            )
        )
        worst = [f for f in result["findings"] if (f["max_diff_vs_control"] or 0) > 0]
        summary = (
            f"{len(result['findings'])} scenarios x {per_condition} samples/condition; "
            f"{len(worst)} with a positive difference vs control"
        )
        return SectionResult(data=result, html=html, summary=summary)
