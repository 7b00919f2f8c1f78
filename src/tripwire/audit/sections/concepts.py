"""Audit section: extract the shipped concepts and evaluate each on held-out passages.

A readout chosen in the first block or two (:data:`EARLY_LAYERS`) may read the words of the
passages rather than a concept built from them; such concepts are flagged *possibly lexical*
in the table and the JSON.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from tripwire.audit._context import AuditContext
from tripwire.audit._html import Raw, esc, figure, svg, table
from tripwire.audit._registry import SectionResult, section

if TYPE_CHECKING:
    from tripwire.whitebox.concepts import ConceptEval

AUROC_BAR = 0.95
#: Readouts chosen at a layer below this (the first two blocks) are flagged possibly lexical.
EARLY_LAYERS = 2


def _sweep_plot(evals: list[ConceptEval]) -> str:
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


def _mark(ok: bool) -> Raw:
    return Raw(f"<span class={'pass' if ok else 'fail'}>{'yes' if ok else 'no'}</span>")


@section
class ConceptsSection:
    name: ClassVar[str] = "concepts"
    title: ClassVar[str] = "Concept directions"
    order: ClassVar[int] = 10

    def run(self, ctx: AuditContext) -> SectionResult:
        evals = ctx.concept_evals()
        rows, data = [], []
        for ev in evals:
            lexical = ev.best_layer < EARLY_LAYERS
            rows.append(
                [
                    ev.name,
                    ev.best_layer,
                    ev.auroc,
                    f"[{ev.auroc_ci[0]:.3f}, {ev.auroc_ci[1]:.3f}]",
                    ev.random_baseline_auroc,
                    ev.cv_auroc,
                    _mark(ev.auroc >= AUROC_BAR),
                    Raw("<b>possibly lexical</b>") if lexical else "",
                ]
            )
            data.append(ev.to_dict() | {"possibly_lexical": lexical})
        passed = sum(ev.auroc >= AUROC_BAR for ev in evals)
        lexical_names = [ev.name for ev in evals if ev.best_layer < EARLY_LAYERS]
        summary = (
            f"{passed}/{len(evals)} concepts separate held-out passages at AUROC >= {AUROC_BAR} "
            f"(median random-direction baseline "
            f"{float(np.median([e.random_baseline_auroc for e in evals])):.3f})"
            + (
                f"; possibly lexical (readout in the first {EARLY_LAYERS} blocks): "
                + ", ".join(lexical_names)
                if lexical_names
                else ""
            )
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
                    "note",
                ],
                rows,
            )
            + (
                f"<p><b>Possibly lexical</b>: {esc(', '.join(lexical_names))} "
                f"{'is' if len(lexical_names) == 1 else 'are'} read in the first "
                f"{EARLY_LAYERS} blocks, where the residual stream still carries mostly the "
                "tokens themselves: the readout may separate the passages by their words rather "
                "than by a concept the model built from them. Read its AUROC with that in "
                "mind; a readout chosen deeper is stronger evidence.</p>"
                if lexical_names
                else ""
            )
            + _sweep_plot(evals)
            + "<p class=muted>The per-layer curves use the held-out pairs at every layer and are "
            "for reading only; the reported layer was chosen on training pairs.</p>"
        )
        return SectionResult(
            data={
                "concepts": data,
                "passed": passed,
                "total": len(evals),
                "bar": AUROC_BAR,
                "early_layers": EARLY_LAYERS,
                "possibly_lexical": lexical_names,
            },
            html=html,
            summary=summary,
        )
