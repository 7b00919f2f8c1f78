"""Audit section: extract the shipped concepts and evaluate each on held-out passages."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from tripwire.report.html import Raw, figure, svg, table
from tripwire.report.sections import AuditContext, SectionResult, section

AUROC_BAR = 0.95


def concept_vectors(ctx: AuditContext) -> dict[str, Any]:
    """The concept vectors of this audit, extracting them on first use (shared by sections)."""
    if "concept_vectors" not in ctx.shared:
        from tripwire.whitebox.concepts import extract_concepts

        results = extract_concepts(
            ctx.lm,
            seed=ctx.seed,
            progress=lambda name, k, n: ctx.progress(f"concept {k}/{n}: {name}"),
        )
        ctx.shared["concept_vectors"] = {v.name: v for v, _ in results}
        ctx.shared["concept_evals"] = [e for _, e in results]
        out = ctx.shared.get("out_dir")
        if isinstance(out, Path):
            for v, _ in results:
                v.save(out / "vectors" / v.name)
    return dict(ctx.shared["concept_vectors"])


def _sweep_plot(evals: list[Any]) -> str:
    fig, ax = figure(9, 4.2)
    for ev in evals:
        layers = [p["layer"] for p in ev.per_layer]
        ax.plot(layers, [p["test_auroc"] for p in ev.per_layer], lw=1.2, label=ev.name)
    base = float(np.mean([ev.random_baseline_auroc for ev in evals]))
    ax.axhline(base, color="k", ls="--", lw=1, label=f"random best-of-100 (mean {base:.2f})")
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.set_xlabel("layer")
    ax.set_ylabel("held-out AUROC")
    ax.set_ylim(0.3, 1.02)
    ax.set_title("Concept separation per layer (logistic readout, held-out pairs)")
    ax.legend(fontsize=7, ncol=4, loc="lower right")
    return svg(fig)


@section
class ConceptsSection:
    name: ClassVar[str] = "concepts"
    title: ClassVar[str] = "Concept directions"
    order: ClassVar[int] = 10

    def run(self, ctx: AuditContext) -> SectionResult:
        concept_vectors(ctx)
        evals = ctx.shared["concept_evals"]
        rows, data = [], []
        for ev in evals:
            ok = ev.auroc >= AUROC_BAR
            rows.append(
                [
                    ev.name,
                    ev.best_layer,
                    ev.auroc,
                    f"[{ev.auroc_ci[0]:.3f}, {ev.auroc_ci[1]:.3f}]",
                    ev.random_baseline_auroc,
                    ev.cv_auroc,
                    Raw(f"<span class={'pass' if ok else 'fail'}>{'yes' if ok else 'no'}</span>"),
                ]
            )
            data.append(ev.to_dict())
        passed = sum(ev.auroc >= AUROC_BAR for ev in evals)
        summary = (
            f"{passed}/{len(evals)} concepts separate held-out passages at AUROC >= {AUROC_BAR} "
            f"(median random-direction baseline "
            f"{float(np.median([e.random_baseline_auroc for e in evals])):.3f})"
        )
        html = (
            "<p>Each concept has 64 matched passage pairs (the concept present vs absent), "
            "shown as user messages and read as the mean residual over the passage's tokens. "
            f"{evals[0].n_test_pairs if evals else 0} pairs per concept were held out before "
            "anything was fitted. The readout (logistic regression on standardised activations) "
            "chooses its layer by 4-fold cross-validation on the training pairs; the held-out "
            "pairs give the AUROC, its stratified bootstrap 95% CI, and the best of 100 random "
            "directions at the same layer (sign chosen in its favour). The steering direction "
            "saved beside each readout is the unit difference of means.</p>"
            + table(
                [
                    "concept",
                    "best layer",
                    "held-out AUROC",
                    "95% CI",
                    "random baseline",
                    "CV AUROC (train)",
                    f">= {AUROC_BAR}",
                ],
                rows,
            )
            + _sweep_plot(evals)
            + "<p class=muted>The per-layer curves use the held-out pairs at every layer and are "
            "for reading only; the reported layer was chosen on training pairs.</p>"
        )
        return SectionResult(
            data={
                "concepts": data,
                "concepts_summary": {"passed": passed, "total": len(evals), "bar": AUROC_BAR},
            },
            html=html,
            summary=summary,
        )
