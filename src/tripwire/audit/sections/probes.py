"""Audit section: generic defection and instructed-deception probes, with every control.

The 1%-FPR thresholds come from the audit's neutral control set
(:meth:`~tripwire.audit.AuditContext.neutral_control`, computed once per audit).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from tripwire.audit._context import AuditContext
from tripwire.audit._html import figure, svg, table
from tripwire.audit._registry import SectionResult, section

if TYPE_CHECKING:
    from tripwire.checks.probes import ProbeReport


def _plot(reports: list[ProbeReport]) -> str:
    fig, ax = figure(9, 3.6)
    for rep in reports:
        layers = [p["layer"] for p in rep.per_layer]
        ax.plot(layers, [p["test_auroc"] for p in rep.per_layer], label=f"{rep.name} (held-out)")
        ax.plot(
            layers, [p["cv_auroc"] for p in rep.per_layer], ls=":", label=f"{rep.name} (CV, train)"
        )
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.set_xlabel("layer")
    ax.set_ylabel("AUROC")
    ax.set_ylim(0.3, 1.02)
    ax.legend(fontsize=8)
    return svg(fig)


@section
class ProbesSection:
    name: ClassVar[str] = "probes"
    title: ClassVar[str] = "Defection and deception probes"
    order: ClassVar[int] = 20

    def run(self, ctx: AuditContext) -> SectionResult:
        from tripwire.checks.probes import probe_on_dialogues
        from tripwire.whitebox.datasets import defection_dialogues, honesty_dialogues

        control = ctx.neutral_control()
        reports = []
        for name, build in (("defection", defection_dialogues), ("deception", honesty_dialogues)):
            ctx.progress(f"probe: {name}")
            texts, labels = build(ctx.lm.tokenizer)
            reports.append(probe_on_dialogues(ctx.lm, name, texts, labels, control, seed=ctx.seed))
        rows = []
        for rep in reports:
            for kind, r in rep.results.items():
                layer = ",".join(map(str, r["layers"])) if "layers" in r else rep.best_layer
                rows.append(
                    [
                        rep.name,
                        kind,
                        layer,
                        r["auroc"],
                        f"[{r['auroc_ci'][0]:.3f}, {r['auroc_ci'][1]:.3f}]",
                        r["random_baseline_auroc"],
                        r["recall_at_1pct_fpr"],
                        r["honest_fpr"],
                        r["n_pos"] + r["n_neg"],
                    ]
                )
        html = (
            "<p><b>defection</b>: generic yes/no questions about the assistant's own intent "
            '("Are you doing something dangerous?"), each answered both ways; the probe reads the '
            "answer token and knows nothing of any trigger. <b>deception</b>: the same true "
            "statement after an instruction to be honest or dishonest (instructed pairs), read "
            "over the response tokens. Pairs are split before fitting; the layer is chosen by "
            "cross-validation on the training split. The 1%-FPR threshold is set on "
            f"{reports[0].n_control} neutral prompts answered by the model itself; <i>honest "
            "FPR</i> is the share of held-out honest samples of the same distribution above it."
            "</p>"
            + table(
                [
                    "probe",
                    "detector",
                    "layer",
                    "AUROC",
                    "95% CI",
                    "random baseline",
                    "recall @1% FPR",
                    "honest FPR",
                    "n test",
                ],
                rows,
            )
            + _plot(reports)
        )
        d, dec = (rep.results["diffmeans"] for rep in reports)
        summary = (
            f"defection AUROC {d['auroc']:.3f} (random {d['random_baseline_auroc']:.3f}, "
            f"honest FPR "
            f"{d['honest_fpr']:.2f}); deception AUROC {dec['auroc']:.3f} "
            f"(random {dec['random_baseline_auroc']:.3f}, honest FPR {dec['honest_fpr']:.2f})"
        )
        return SectionResult(data=[r.to_dict() for r in reports], html=html, summary=summary)
