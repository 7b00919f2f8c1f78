"""Audit section: world-model (event plausibility) and evaluation-vs-deployment probes.

A seeded subset of the shipped sets and every other layer keep the section short
(``N_FRAMES`` frames and ``N_REQUESTS`` requests; ``--limit`` lowers both);
``tripwire probe plausibility`` and ``tripwire probe eval-awareness`` run the full sets at every
layer. Each layer's figure stands beside the best of N random directions and its text-only
baseline; plausibility uses differences of means only, the eval-context probe chooses between a
difference of means and a logistic probe by training CV, as the command does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from tripwire.audit._context import AuditContext
from tripwire.audit._html import figure, svg, table
from tripwire.audit._registry import SectionResult, section

if TYPE_CHECKING:
    from tripwire.checks.eval_awareness import EvalAwarenessResult
    from tripwire.checks.plausibility import PlausibilityResult

N_FRAMES = 48
N_REQUESTS = 48
N_RANDOM = 100
#: Every other block (and the last): the curves keep their shape at half the fitting cost.
LAYER_STRIDE = 2


def _plot(plaus: PlausibilityResult, evalaware: EvalAwarenessResult) -> str:
    fig, ax = figure(11, 3.6)
    ax.remove()
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    layers = [r["layer"] for r in plaus.per_layer]
    for name in plaus.pairs:
        ax1.plot(layers, [r[name]["auroc"] for r in plaus.per_layer], label=name.replace("_", " "))
    ax1.plot(
        layers,
        [r["random_baseline_auroc"] for r in plaus.per_layer],
        ls=":",
        color="grey",
        label="random directions (mean of pairs)",
    )
    lp = plaus.baselines["logprob"]["pairs"]
    ax1.axhline(
        sum(p["auroc"] for p in lp.values()) / len(lp),
        ls="--",
        color="black",
        lw=1,
        label="sentence log-prob (mean of pairs)",
    )
    ax1.axvline(plaus.chosen_layer, color="grey", lw=0.8)
    ax1.set_title("event plausibility (held-out frames)", fontsize=9)
    layers = [r["layer"] for r in evalaware.per_layer]
    ax2.plot(layers, [r["auroc"] for r in evalaware.per_layer], label="diff-of-means probe")
    ax2.plot(layers, [r["logistic_auroc"] for r in evalaware.per_layer], label="logistic probe")
    ax2.plot(
        layers,
        [r["random_baseline_auroc"] for r in evalaware.per_layer],
        ls=":",
        color="grey",
        label="random directions (best of N)",
    )
    ax2.axhline(
        evalaware.baselines["text_tfidf"]["auroc"],
        ls="--",
        color="black",
        lw=1,
        label="TF-IDF text baseline",
    )
    ax2.axvline(evalaware.chosen_layer, color="grey", lw=0.8)
    ax2.set_title("evaluation vs deployment (held-out requests + templates)", fontsize=9)
    for ax in (ax1, ax2):
        ax.axhline(0.5, color="grey", lw=0.5)
        ax.set_xlabel("layer")
        ax.set_ylim(0.3, 1.02)
        ax.legend(fontsize=7)
    ax1.set_ylabel("AUROC")
    return svg(fig)


@section
class WorldModelSection:
    name: ClassVar[str] = "worldmodel"
    title: ClassVar[str] = "World-model and eval-awareness probes"
    order: ClassVar[int] = 23

    def run(self, ctx: AuditContext) -> SectionResult:
        from tripwire.checks.eval_awareness import probe_eval_awareness
        from tripwire.checks.plausibility import probe_plausibility

        n_frames = ctx.capped(N_FRAMES, floor=16)
        n_req = ctx.capped(N_REQUESTS, floor=16)
        n_layers = ctx.lm.n_layers
        layers = sorted({*range(0, n_layers, LAYER_STRIDE), n_layers - 1})
        plaus = probe_plausibility(
            ctx.lm,
            layers=layers,
            limit=n_frames,
            n_random=N_RANDOM,
            seed=ctx.seed,
            logistic=False,
            progress=ctx.progress,
        )
        ea = probe_eval_awareness(
            ctx.lm,
            layers=layers,
            limit=n_req,
            n_random=N_RANDOM,
            seed=ctx.seed,
            progress=ctx.progress,
        )
        rows: list[list[Any]] = []
        for name, p in plaus.pairs.items():
            rows.append(
                [
                    f"plausibility: {name.replace('_', ' ')}",
                    plaus.chosen_layer,
                    p["auroc"],
                    f"[{p['auroc_ci'][0]:.3f}, {p['auroc_ci'][1]:.3f}]",
                    p["random_baseline_auroc"],
                    f"log-prob {p['logprob_auroc']:.3f}",
                    p["n_test"],
                ]
            )
        text = ea.baselines["text_tfidf"]
        rows.append(
            [
                f"evaluation vs deployment ({ea.detector_kind})",
                ea.chosen_layer,
                ea.auroc,
                f"[{ea.auroc_ci[0]:.3f}, {ea.auroc_ci[1]:.3f}]",
                ea.random_baseline_auroc,
                f"TF-IDF {text['auroc']:.3f}",
                ea.n_test,
            ]
        )
        t = plaus.three_way
        html = (
            f"<p><b>Plausibility</b>: {plaus.n_frames} shipped event frames, each written "
            "plausible / improbable / impossible with one or two words changed; a difference of "
            "means per pair of categories, read at the last token and scored on "
            f"{plaus.n_test_frames} held-out frames. The text-only baseline is the model's own "
            "mean token log-probability of the sentence. <b>Evaluation vs deployment</b>: "
            f"{ea.n_train // 2 + ea.n_test // 2} requests, each framed as a test and as real "
            "use; the test split holds requests <i>and</i> framing templates never seen in "
            "training, read as the behaviour suite reads a detector (mean over a reply). The "
            "surface baseline is TF-IDF + logistic regression on the text. Layers are chosen "
            "by cross-validation on the training split only. Subsets of the shipped sets "
            "and every other layer keep this section short: "
            "<code>tripwire probe plausibility</code> and "
            "<code>tripwire probe eval-awareness</code> run the full sets and save the detector "
            "for <code>-M detector=PATH:LAYER</code>.</p>"
            + table(
                [
                    "probe",
                    "layer",
                    "AUROC",
                    "95% CI",
                    "random baseline",
                    "text baseline",
                    "n test",
                ],
                rows,
            )
            + f"<p>3-way plausibility accuracy at layer {plaus.chosen_layer}: "
            f"{t['accuracy']:.2f} [{t['accuracy_ci'][0]:.2f}, {t['accuracy_ci'][1]:.2f}] "
            f"(log-prob alone {t['logprob_accuracy']:.2f}; chance 0.33; n={t['n_test']}).</p>"
            + _plot(plaus, ea)
        )
        hard = plaus.pairs["improbable_vs_impossible"]
        summary = (
            f"improbable vs impossible AUROC {hard['auroc']:.3f} at layer {plaus.chosen_layer} "
            f"(random {hard['random_baseline_auroc']:.3f}, log-prob {hard['logprob_auroc']:.3f}); "
            f"3-way accuracy {t['accuracy']:.2f}; eval-vs-deployment AUROC {ea.auroc:.3f} at "
            f"layer {ea.chosen_layer} (random {ea.random_baseline_auroc:.3f}, TF-IDF "
            f"{text['auroc']:.3f})"
        )
        return SectionResult(
            data={"plausibility": plaus.to_dict(), "eval_awareness": ea.to_dict()},
            html=html,
            summary=summary,
        )
