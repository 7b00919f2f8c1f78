"""Audit section: steer one concept and show that it moves what it should.

The direction is added at the concept's layer with a strength relative to the typical
residual norm there. Three checks, on held-out neutral prompts the concept was never fitted on:
(1) the projection at a later layer moves in the intended direction (+ and −) with a CI;
(2) the model's steered answers, re-read *without* steering, carry more of the concept;
(3) before/after text. Ablation (project out) at the same layer is shown beside.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from tripwire.audit._context import AuditContext
from tripwire.audit._html import esc, table
from tripwire.audit._registry import SectionResult, section
from tripwire.audit.sections.pressure import N_BOOT
from tripwire.stats import paired_bootstrap

CONCEPT = "joy"
RELATIVE_STRENGTH = 0.35  # fraction of the mean residual norm at the steered layer
N_PROMPTS = 12
N_SHOWN = 4
NEW_TOKENS = 32


@section
class SteeringSection:
    name: ClassVar[str] = "steering"
    title: ClassVar[str] = "Steering effect"
    order: ClassVar[int] = 40

    def run(self, ctx: AuditContext) -> SectionResult:
        from tripwire.models.chat import render_with_response
        from tripwire.whitebox.capture import capture
        from tripwire.whitebox.datasets import neutral_prompts
        from tripwire.whitebox.generation import generate
        from tripwire.whitebox.steering import export_control_vector, steer

        lm = ctx.lm
        # Reuse the concepts section's vector; run alone, extract this one concept only.
        reused = CONCEPT in ctx.extracted_concepts()
        v = ctx.concept_vectors([CONCEPT])[CONCEPT]
        source = (
            "the concepts section" if reused else f"extracted for this section ({CONCEPT} only)"
        )
        layer = v.layer
        readout = min(lm.n_layers - 1, layer + 4)
        # Held out: the tail of the neutral set (concepts and thresholds use its head).
        prompts = neutral_prompts()[-N_PROMPTS:]
        rendered = [lm.prompt(p) for p in prompts]
        base = capture(lm, rendered, layers=[layer, readout], positions="mean")
        norm = float(np.linalg.norm(base[layer], axis=1).mean())
        strength = RELATIVE_STRENGTH * norm
        u = v.direction
        ctx.progress(f"steering {CONCEPT} at layer {layer} (strength {strength:.1f})")

        def readout_proj(**kw: Any) -> np.ndarray:
            with steer(lm, {layer: u}, **kw):
                acts = capture(lm, rendered, layers=[readout], positions="mean")
            return acts[readout] @ v.directions[readout]

        p0 = base[readout] @ v.directions[readout]
        p_up = readout_proj(mode="add", strength=strength)
        p_down = readout_proj(mode="add", strength=-strength)
        p_abl = readout_proj(mode="ablate")
        mech = {
            name: dict(
                zip(
                    ("mean_diff", "ci_lo", "ci_hi"),
                    paired_bootstrap(p - p0, N_BOOT, ctx.seed),
                    strict=True,
                )
            )
            for name, p in (("add +", p_up), ("add -", p_down), ("ablate", p_abl))
        }
        # Behaviour: generate with and without steering, re-read answers unsteered.
        before = generate(lm, rendered, max_new_tokens=NEW_TOKENS, batch_size=16)
        with steer(lm, {layer: u}, mode="add", strength=strength):
            after = generate(lm, rendered, max_new_tokens=NEW_TOKENS, batch_size=16)

        def reread(answers: list[str]) -> np.ndarray:
            texts = [
                render_with_response(
                    lm.tokenizer,
                    [
                        {"role": "user", "content": p},
                        {"role": "assistant", "content": a.strip() or "."},
                    ],
                )
                for p, a in zip(prompts, answers, strict=True)
            ]
            return v.zscore(capture(lm, texts, layers=[layer], positions="mean")[layer])

        z_before, z_after = reread(before), reread(after)
        beh = dict(
            zip(
                ("mean_diff_z", "ci_lo", "ci_hi"),
                paired_bootstrap(z_after - z_before, N_BOOT, ctx.seed),
                strict=True,
            )
        )
        changed = sum(a.strip() != b.strip() for a, b in zip(before, after, strict=True))
        gguf_path = None
        if layer > 0:
            gguf_path = export_control_vector(
                {layer: u},
                ctx.out_dir / "vectors" / f"{CONCEPT}.gguf",
                model_hint=str(lm.describe()["model_type"]),
                strength=strength,
            )
        rows = [
            [k, m["mean_diff"], f"[{m['ci_lo']:.2f}, {m['ci_hi']:.2f}]"] for k, m in mech.items()
        ]
        examples = "".join(
            f"<tr><td>{esc(p)}</td><td>{esc(b.strip())}</td><td>{esc(a.strip())}</td></tr>"
            for p, b, a in list(zip(prompts, before, after, strict=True))[:N_SHOWN]
        )
        up_ok = mech["add +"]["ci_lo"] > 0 and mech["add -"]["ci_hi"] < 0
        html = (
            f"<p>Concept <b>{esc(CONCEPT)}</b> (vector: {esc(source)}), "
            f"added at layer {layer} with strength "
            f"{strength:.1f} ({RELATIVE_STRENGTH} × the mean residual norm {norm:.1f}); "
            "read out at "
            f"layer {readout} on {len(prompts)} held-out neutral prompts. Paired differences "
            "against no steering, bootstrap 95% CI:</p>"
            + table(["intervention", f"Δ projection at layer {readout}", "95% CI"], rows)
            + f"<p>Answers generated with steering, re-read <i>without</i> steering: Δz = "
            f"{beh['mean_diff_z']:+.2f} [{beh['ci_lo']:+.2f}, {beh['ci_hi']:+.2f}] in {CONCEPT}; "
            f"{changed}/{len(prompts)} answers changed.</p>"
            "<table><thead><tr><th>prompt</th><th>before</th><th>after (steered)</th></tr></thead>"
            f"<tbody>{examples}</tbody></table>"
            + (
                f"<p class=muted>llama.cpp control vector: {esc(gguf_path.name)}</p>"
                if gguf_path
                else ""
            )
        )
        data = {
            "concept": CONCEPT,
            "vector_source": source,
            "layer": layer,
            "readout_layer": readout,
            "strength": strength,
            "relative_strength": RELATIVE_STRENGTH,
            "projection_shift": mech,
            "reread_shift": beh,
            "answers_changed": changed,
            "n_prompts": len(prompts),
            "examples": [
                {"prompt": p, "before": b, "after": a}
                for p, b, a in zip(prompts, before, after, strict=True)
            ],
            "intended_direction": bool(up_ok and beh["ci_lo"] > 0),
        }
        summary = (
            f"{CONCEPT} +{strength:.0f} at layer {layer}: "
            f"projection {mech['add +']['mean_diff']:+.1f}, "
            f"−: {mech['add -']['mean_diff']:+.1f}; re-read answers Δz {beh['mean_diff_z']:+.2f} "
            f"[{beh['ci_lo']:+.2f}, {beh['ci_hi']:+.2f}]; {changed}/{len(prompts)} answers changed"
            + ("" if reused else f" ({CONCEPT} extracted alone: the concepts section did not run)")
        )
        return SectionResult(data=data, html=html, summary=summary)
