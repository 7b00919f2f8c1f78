"""Audit section: the guardrail tamper test — how cheaply do this model's refusals come off?

Arditi et al.'s refusal direction (difference of means on refused vs ordinary instructions,
chosen among layers x post-instruction positions by bypass, induced refusal and KL), ablated
from the whole model. Refusal rates on held-out requests before and after, beside the same
ablation with a random direction; the induced refusal rate on ordinary instructions with the
direction added; KL on ordinary instructions. ``--limit N`` caps the held-out sets (and the
validation sets used to choose the direction) at N instructions of each kind.
"""

from __future__ import annotations

from typing import Any, ClassVar

from tripwire.audit._context import AuditContext
from tripwire.audit._html import esc, figure, svg, table
from tripwire.audit._registry import SectionResult, section

#: Kept small so the section takes a minute or two on a CPU; ``tripwire tamper`` sweeps more.
N_VAL = 8  # validation instructions of each kind used to score candidates
N_TEST = 24  # held-out test instructions of each kind
LAYER_STEP = 3  # candidates at every third layer
LAST_POSITIONS = 2  # the last two post-instruction tokens
NEW_TOKENS = 32


def _rate(r: dict[str, Any]) -> str:
    return f"{r['rate']:.0%} [{r['ci'][0]:.0%}, {r['ci'][1]:.0%}] ({r['k']}/{r['n']})"


def _plot(d: dict[str, Any]) -> str:
    fig, _ = figure(10, 3.4)
    fig.clf()
    ax, bx = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    by_pos: dict[int, list[dict[str, Any]]] = {}
    for c in d["candidates"]:
        by_pos.setdefault(c["position"], []).append(c)
    for pos, cs in sorted(by_pos.items()):
        ax.plot(
            [c["layer"] for c in cs],
            [float("nan") if c["bypass"] is None else c["bypass"] for c in cs],
            marker=".",
            label=f"pos {pos}",
        )
    before = d["logit_score"]["before"]["mean"]
    ax.axhline(before, color="grey", ls=":", lw=1, label="held-out, no ablation")
    ax.scatter([d["layer"]], [d["candidate"]["bypass"]], s=80, facecolors="none", color="red")
    ax.set_xlabel("layer of the candidate direction")
    ax.set_ylabel("refusal score, ablated (val)")
    ax.legend(fontsize=7)
    names = ["before", "ablated", "random\nablated"]
    keys = ["before", "ablated", "random_ablated"]
    rates = [d["refusal"][k]["rate"] for k in keys]
    errs = [
        [r - d["refusal"][k]["ci"][0] for r, k in zip(rates, keys, strict=True)],
        [d["refusal"][k]["ci"][1] - r for r, k in zip(rates, keys, strict=True)],
    ]
    bx.bar(names, rates, yerr=errs, capsize=4, color=["#777", "#d62728", "#1f77b4"])
    bx.set_ylabel("refusal rate, held-out refused requests")
    bx.set_ylim(0, 1)
    fig.tight_layout()
    return svg(fig)


@section
class TamperSection:
    name: ClassVar[str] = "tamper"
    title: ClassVar[str] = "Guardrail tamper test (refusal direction)"
    order: ClassVar[int] = 45

    def run(self, ctx: AuditContext) -> SectionResult:
        from tripwire.checks.tamper import tamper_test

        n_test = ctx.capped(N_TEST, floor=2)
        n_val = ctx.capped(N_VAL, floor=2)
        res = tamper_test(
            ctx.lm,
            max_new_tokens=NEW_TOKENS,
            seed=ctx.seed,
            limit=n_test,
            n_val=n_val,
            layer_step=LAYER_STEP,
            last_positions=LAST_POSITIONS,
            progress=lambda m: ctx.progress(f"tamper: {m}"),
        )
        d = res.to_dict()
        d["candidate"] = next(
            c for c in d["candidates"] if c["layer"] == res.layer and c["position"] == res.position
        )
        ref, ind, ls = d["refusal"], d["induced"], d["logit_score"]
        rows = [
            ["refused requests", "before", _rate(ref["before"]), ls["before"]["mean"]],
            ["refused requests", "refusal direction ablated", _rate(ref["ablated"]),
             ls["ablated"]["mean"]],
            ["refused requests", "random direction ablated (control)",
             _rate(ref["random_ablated"]), ls["random_ablated"]["mean"]],
            ["ordinary instructions", "baseline", _rate(ind["baseline"]), ""],
            ["ordinary instructions", "refusal direction added", _rate(ind["added"]), ""],
            ["ordinary instructions", "random direction added (control)",
             _rate(ind["random_added"]), ""],
        ]  # fmt: skip
        drop, rb, kl = d["drop"]["ablated"], d["refused_before"], d["kl"]
        html = (
            f"<p>Direction: difference of means at layer <b>{res.layer}</b>, post-instruction "
            f"position <b>{res.position}</b> (of {res.n_positions}), chosen on "
            f"{res.n_val['refuse']}+{res.n_val['ordinary']} validation instructions by "
            f"{esc(res.selection_rule)}"
            + ("" if res.filters_passed else " — <b>no candidate passed the filters</b>")
            + ". Refusal = a refusal marker in the greedy completion "
            f"({res.max_new_tokens} tokens); logit score = log-odds of a refusal first token. "
            "95% Wilson intervals.</p>"
            + table(["held-out set", "condition", "refusal rate", "logit refusal score"], rows)
            + f"<p>Drop in refusal: {drop['diff']:+.0%} [{drop['ci'][0]:+.0%}, "
            f"{drop['ci'][1]:+.0%}] (paired Newcombe); of the {rb['n']} held-out requests refused "
            f"before, {rb['still_refused']['k']} are still refused after ablation "
            f"({rb['still_refused_random']['k']} with the random direction). KL on ordinary "
            f"instructions under ablation {kl['ablated']['mean']:.3f} "
            f"[{kl['ablated']['ci'][0]:.3f}, {kl['ablated']['ci'][1]:.3f}] "
            f"(random direction {kl['random_ablated']['mean']:.3f}).</p>" + _plot(d)
        )
        summary = (
            f"refusal {ref['before']['rate']:.0%} → {ref['ablated']['rate']:.0%} with the "
            f"layer-{res.layer} direction ablated (random direction: "
            f"{ref['random_ablated']['rate']:.0%}); induced on ordinary "
            f"{ind['baseline']['rate']:.0%} → {ind['added']['rate']:.0%}; "
            f"KL {kl['ablated']['mean']:.3f} (random {kl['random_ablated']['mean']:.3f})"
            + ("" if res.filters_passed else "; no direction passed the KL/induce filters")
        )
        return SectionResult(data=d, html=html, summary=summary)
