"""Audit section (only with ``--adapter``): how far the adapter moved the model along each
shipped concept, measured against the clean base and beside random directions.

Directions come from the audit's ``concepts`` section when it ran (the concept vectors the
audit has already extracted, fitted on the model under audit) and are otherwise fitted once on
the clean base (a difference of means at the middle layer, :data:`N_PAIRS` pairs per concept).
Either way they are held fixed for both models, so only the activations differ.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np

from tripwire.audit._context import AuditContext
from tripwire.audit._html import esc, figure, svg, table
from tripwire.audit._registry import SectionResult, section

if TYPE_CHECKING:
    from tripwire.checks.checkpoint_drift import ConceptDrift

N_PROMPTS = 48
N_PAIRS = 8
N_RANDOM = 500


def _plot(rows: list[ConceptDrift]) -> str:
    fig, ax = figure(9, 0.32 * len(rows) + 1.4)
    y = np.arange(len(rows))
    z = np.array([r.drift_z for r in rows])
    lo = np.array([r.ci[0] for r in rows])
    hi = np.array([r.ci[1] for r in rows])
    band = np.array([r.random_abs_z_p95 for r in rows])
    ax.barh(
        y, 2 * band, left=-band, height=0.8, color="0.88", label="random directions: 95% of |z|"
    )
    colors = ["tab:red" if r.beyond_random else "tab:blue" for r in rows]
    ax.errorbar(
        z, y, xerr=[z - lo, hi - z], fmt="none", ecolor="k", elinewidth=1, capsize=2, zorder=3
    )
    ax.scatter(z, y, c=colors, zorder=4, label="concept drift (95% CI)")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(y, [f"{r.concept} (L{r.layer})" for r in rows])
    ax.invert_yaxis()
    ax.set_xlabel("drift z: mean shift on the prompts / base projection std")
    ax.legend(fontsize=7, loc="lower right")
    return svg(fig)


@section
class DriftSection:
    name: ClassVar[str] = "drift"
    title: ClassVar[str] = "Concept drift from the base model to the adapter"
    order: ClassVar[int] = 27

    @staticmethod
    def applies(ctx: AuditContext) -> bool:
        return getattr(ctx.lm, "adapter", None) is not None

    def run(self, ctx: AuditContext) -> SectionResult:
        from tripwire.checks.checkpoint_drift import (
            directions_from_vectors,
            eval_prompts,
            fit_directions,
            measure_drift,
        )
        from tripwire.models.loading import load_model

        ctx.progress("drift: loading the clean base model")
        dtype = str(ctx.lm.describe()["dtype"])
        base = load_model(ctx.lm.spec, dtype=dtype, device=str(ctx.lm.device))
        vectors = ctx.extracted_concepts()
        if vectors:
            directions = directions_from_vectors(
                vectors, "the audit's concepts section (fitted on the model under audit)"
            )
        else:
            layer = base.n_layers // 2
            directions = fit_directions(
                base,
                n_pairs=N_PAIRS,
                layers=[layer],
                seed=ctx.seed,
                progress=lambda name, k, n: ctx.progress(f"drift: direction {k}/{n}: {name}"),
            )
            for d in directions.values():
                d.source = f"fitted once on the clean base (difference of means, {N_PAIRS} pairs)"
        n = ctx.capped(N_PROMPTS, floor=8)
        res = measure_drift(
            ("base", base),
            [("adapter", ctx.lm)],
            directions=directions,
            prompts=eval_prompts(n),
            n_random=N_RANDOM,
            seed=ctx.seed,
            progress=lambda m: ctx.progress(f"drift: {m}"),
        )
        rows = res.drift
        beyond = [r.concept for r in rows if r.beyond_random]
        html_rows = [
            [
                r.concept,
                r.layer,
                r.drift_z,
                f"[{r.ci[0]:+.2f}, {r.ci[1]:+.2f}]",
                r.random_abs_z_p95,
                f"{r.random_percentile:.0f}",
                "yes" if r.beyond_random else "no",
            ]
            for r in rows
        ]
        shifts = "; ".join(
            f"layer {o.layer}: {o.relative_shift:.3f} of the base spread, random-direction "
            f"|z| median {o.random_abs_z_median:.2f}"
            for o in res.overall
        )
        source = res.directions[0].source if res.directions else ""
        html = (
            f"<p>Adapter <code>{esc(ctx.lm.adapter)}</code> against the clean base "
            f"<code>{esc(ctx.lm.spec)}</code> on {res.n_prompts} shipped prompts (neutral "
            "requests, pressure prompts, held-out concept passages), each read as the mean "
            "residual over its text. Directions: "
            f"{esc(source)}. <i>z</i> = mean paired shift of the projection / the base's "
            "projection std, with a bootstrap 95% CI over prompts. The control is the same "
            f"|z| along {res.n_random} random unit directions at the same layer: a concept "
            "counts as drifted only beyond their 95th percentile (grey band).</p>"
            + table(
                [
                    "concept",
                    "layer",
                    "drift z",
                    "95% CI",
                    "random p95 |z|",
                    "percentile among random",
                    "beyond random",
                ],
                html_rows,
            )
            + f"<p>Overall shift: {esc(shifts)}.</p>"
            + _plot(rows)
        )
        top = max(rows, key=lambda r: abs(r.drift_z))
        summary = (
            f"{len(beyond)}/{len(rows)} concepts drift beyond the random-direction control"
            + (f" ({', '.join(beyond)})" if beyond else "")
            + f"; largest {top.concept} z {top.drift_z:+.2f} "
            f"(random p95 {top.random_abs_z_p95:.2f})"
        )
        return SectionResult(data=res.to_dict(), html=html, summary=summary)
