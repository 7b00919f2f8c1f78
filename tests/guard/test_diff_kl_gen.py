"""The built-in ``diff-kl-gen`` guard detector: the first 8 answer tokens, held back.

The guard generates a row's first tokens without sending them while the clean base follows them
with its own cache; the score (mean KL of the fine-tune's next-token distribution from the
base's over those positions) is the probe's ``diff-kl-gen`` feature, checked here against a
plain teacher-forced forward pass of both models. A blocked answer sends none of the held-back
tokens; an allowed one sends exactly what the unguarded model says.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from tests.guard.test_diff_kl import PROMPTS, fine_tune  # noqa: F401  (the fixture)


def _reference(lm: Any, base: Any, prompt_ids: list[int], answer: list[int], k: int) -> float:
    """Mean over the first ``k`` answer positions of KL(model || base), from one full forward
    of each model over the prompt and the answer (positions past the answer's end count 0)."""
    ids = torch.tensor([prompt_ids + answer[: k - 1]])
    with torch.inference_mode():
        lp = torch.log_softmax(lm.model(input_ids=ids).logits[0].double(), -1)
        lq = torch.log_softmax(base.model(input_ids=ids).logits[0].double(), -1)
    p = len(prompt_ids)
    kl = (lp.exp() * (lp - lq)).sum(-1)[p - 1 :].clamp(min=0.0)
    return float(kl[: min(k, len(answer) + 1)].sum()) / k


def _greedy(lm: Any, prompt_ids: list[int], n: int) -> list[int]:
    with torch.inference_mode():
        out = lm.model.generate(
            torch.tensor([prompt_ids]), max_new_tokens=n, do_sample=False, pad_token_id=0
        )
    return [int(t) for t in out[0, len(prompt_ids) :]]


def test_diff_kl_gen_scores_the_held_back_tokens_as_a_full_forward_does(
    fine_tune: tuple[Path, Path],  # noqa: F811
) -> None:
    from tripwire.guard import Guard
    from tripwire.guard.api import load_detectors
    from tripwire.guard.detectors import HOLD_TOKENS
    from tripwire.models.loading import load_model

    base_dir, lora = fine_tune
    lm, base = load_model(str(base_dir), str(lora)), load_model(str(base_dir))
    guard = Guard(lm, load_detectors(["diff-kl-gen"], lora), base=base)
    assert guard.monitor.hold == HOLD_TOKENS == 8
    plain = Guard(lm)
    for prompt in PROMPTS[:3]:
        msgs = [{"role": "user", "content": prompt}]
        ans = guard.chat(msgs, max_tokens=12, temperature=0)
        hold = ans["tripwire"]["choices"][0]["hold"]
        assert hold["stage"] == "hold" and hold["action"] == "allow"
        ids = guard.prepare({"messages": msgs}).request.prompt_ids
        gen = _greedy(lm, ids, 12)
        want = _reference(lm, base, ids, gen, HOLD_TOKENS)
        assert want > 0
        np.testing.assert_allclose(hold["scores"]["diff-kl-gen"], want, rtol=2e-3)
        # holding the tokens back changes nothing in what the model says
        said = plain.chat(msgs, max_tokens=12, temperature=0)["choices"][0]["message"]
        assert ans["choices"][0]["message"]["content"] == said["content"]


def test_a_blocked_hold_sends_none_of_its_tokens(
    fine_tune: tuple[Path, Path],  # noqa: F811
) -> None:
    from tripwire.guard import Guard
    from tripwire.guard.api import load_detectors
    from tripwire.guard.calibrate import calibrate
    from tripwire.guard.detectors import write_sidecar
    from tripwire.models.loading import load_model
    from tripwire.whitebox.datasets import neutral_prompts

    base_dir, lora = fine_tune
    lm, base = load_model(str(base_dir), str(lora)), load_model(str(base_dir))
    det = load_detectors(["diff-kl-gen"], lora)[0]
    traffic = [[{"role": "user", "content": p}] for p in neutral_prompts()[:40]]
    cal = calibrate(lm, det, traffic, budget=0.05, flag_budget=None, base=base)
    assert cal.detector.prefill is not None and cal.detector.decode is None
    assert len(set(cal.prefill_scores)) > 30  # a real score per prompt, not a constant
    side = write_sidecar(cal.detector, lm.name, {})
    assert side == Path(f"{lora}.diff-kl-gen.guard.json")
    again = load_detectors(["diff-kl-gen"], lora)[0]
    assert again.calibrated and again.prefill == cal.detector.prefill
    guard = Guard(lm, [again], base=base)
    top = int(np.argmax(cal.prefill_scores))  # above the threshold: calibration blocks it too
    assert cal.prefill_scores[top] > again.prefill.block
    chunks = list(guard.stream(traffic[top], max_tokens=16, temperature=0))
    texts = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    last = chunks[-1]["choices"][0]
    assert last["finish_reason"] == "content_filter"
    assert "diff-kl-gen" in last["tripwire"]["reasons"][0]
    assert "held back" in last["tripwire"]["reasons"][0]
    assert [t for t in texts if t] == [last["delta"]["content"]]  # only the notice was sent
    from tripwire.guard.telemetry import evaluations

    prep = guard.prepare({"messages": traffic[top], "max_tokens": 16})
    guard.run([prep], lambda _i, ev: prep.answer.add(ev))
    held = [e for e in evaluations(prep.answer) if e["tripwire.guard.stage"] == "hold"]
    assert [(e["gen_ai.evaluation.name"], e["gen_ai.evaluation.score.label"]) for e in held] == [
        ("diff-kl-gen", "block")
    ]
    from tripwire.guard.policy import Policy

    shadow = Guard(lm, [again], base=base, policy=Policy(mode="shadow"))
    seen = shadow.chat(traffic[top], max_tokens=16, temperature=0)
    assert seen["choices"][0]["finish_reason"] in ("stop", "length")  # served, not blocked
    assert seen["tripwire"]["choices"][0]["shadow_action"] == "block"
    assert seen["tripwire"]["choices"][0]["hold"]["action"] == "block"
    demoted = Policy(caps={"diff-kl-gen": {"prefill": "flag", "decode": "block"}})
    flagged = Guard(lm, [again], base=base, policy=demoted).chat(traffic[top], max_tokens=16)
    assert flagged["tripwire"]["action"] == "flag"
    assert flagged["choices"][0]["finish_reason"] in ("stop", "length")
    low = int(np.argmin(cal.prefill_scores))
    ans = guard.chat(traffic[low], max_tokens=16, temperature=0, n=2)
    for choice, ext in zip(ans["choices"], ans["tripwire"]["choices"], strict=True):
        assert choice["finish_reason"] in ("stop", "length")
        assert ext["hold"]["action"] == "allow" and choice["message"]["content"]
