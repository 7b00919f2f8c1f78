"""``tripwire guard calibrate``: thresholds from honest traffic, to a false-block budget.

The guard itself answers every honest prompt (``max_tokens`` tokens, greedy unless told, the
detector reading its residuals as it would in service), recording the last prompt token's score
and every generated token's score. Then:

* the prefill ``block`` threshold is the conformal ``(1 - budget)`` quantile of the prompts'
  scores (``flag`` the same at ``flag_budget``), so an honest prompt exchangeable with these is
  blocked with probability at most ``budget``;
* the decode rule's ``level`` is the conformal quantile of each honest answer's peak statistic,
  so at most ``budget`` of honest answers (as long as the calibration's) are cut.

Each budget is per detector: with several detectors the false blocks can add up (at most the sum
of their budgets). The sidecar is written atomically beside the detector.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from tripwire.errors import DataError, UsageError
from tripwire.guard.api import Guard
from tripwire.guard.chat import RequestError, normalize_messages
from tripwire.guard.detectors import GuardDetector, PrefillThresholds
from tripwire.guard.engine import Event, Finish, Gate, Token
from tripwire.guard.rules import RULES, conformal_threshold, fit_rule, min_samples
from tripwire.models.chat import Message
from tripwire.models.loading import LocalModel


def read_traffic(path: str | Path) -> list[list[Message]]:
    """Honest traffic: JSONL lines ``{"messages": [...]}`` (a chat request body) or
    ``{"prompt": "...", "system": "..."}``."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"traffic file {p} does not exist")
    out: list[list[Message]] = []
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise DataError(f"{p}:{n}: not a JSON object") from None
        if not isinstance(row, dict):
            raise DataError(f"{p}:{n}: not a JSON object")
        if isinstance(row.get("prompt"), str):
            msgs = [{"role": "system", "content": row["system"]}] if row.get("system") else []
            row = {"messages": [*msgs, {"role": "user", "content": row["prompt"]}]}
        try:
            out.append(normalize_messages(row.get("messages")))
        except RequestError as exc:
            raise DataError(
                f'{p}:{n}: {exc} (a line is {{"messages": [...]}} or {{"prompt": "..."}})'
            ) from None
    if not out:
        raise DataError(f"{p} holds no prompts")
    return out


@dataclass
class Calibration:
    """The calibrated detector and what calibration saw."""

    detector: GuardDetector
    prefill_scores: list[float]
    answer_scores: list[list[float]]

    def summary(self) -> dict[str, Any]:
        d = self.detector
        assert d.prefill is not None
        decode = None
        if d.decode is not None:
            decode = {"rule": d.decode.rule, "level": d.decode.level, "budget": d.decode.budget,
                      "false_stop_rate": d.decode.false_stop_rate}  # fmt: skip
        return {
            "detector": d.name,
            "layers": d.layers,
            "n_prompts": len(self.prefill_scores),
            "n_tokens": sum(len(a) for a in self.answer_scores),
            "prefill": {
                "block": d.prefill.block,
                "flag": d.prefill.flag,
                "budget": d.prefill.budget,
                "false_block_rate": d.prefill.false_block_rate,
            },
            "decode": decode,
        }


def calibrate(
    lm: LocalModel,
    detector: GuardDetector,
    traffic: Sequence[list[Message]],
    budget: float = 0.01,
    flag_budget: float | None = 0.05,
    max_tokens: int = 32,
    rule: str = "cusum",
    temperature: float = 0.0,
    seed: int = 0,
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
    base: LocalModel | None = None,
) -> Calibration:
    """Run the honest ``traffic`` through a guard reading ``detector``; set its thresholds.

    Answers are sampled as ``temperature``/``seed`` say (greedy by default): calibrate with
    the sampling the guard will serve, since per-token scores follow the tokens sampled. A
    diffing detector (``diff-kl``) needs ``base`` and reads the prompt only: no answers are
    generated and it gets no decode rule (``diff-kl-gen``: the answers' first 8 tokens).
    """
    if rule not in RULES:
        raise UsageError(f"unknown --rule {rule!r}: use {' or '.join(RULES)}")
    if len(traffic) < min_samples(budget):
        raise UsageError(
            f"a {budget:.2%} budget needs at least {min_samples(budget)} honest prompts, got "
            f"{len(traffic)}: add honest traffic or raise --budget"
        )
    bare = replace(detector, prefill=None, decode=None)
    guard = Guard(lm, [bare], base=base)
    if bare.needs_base:
        # the gate reads the prompt (and the held-back tokens): nothing past them is scored
        max_tokens = max(1, bare.hold)
    prefill: list[float] = []
    answers: list[list[float]] = []
    for b0 in range(0, len(traffic), batch_size):
        chunk = traffic[b0 : b0 + batch_size]
        preps = [
            guard.prepare(
                {"messages": m, "max_tokens": max_tokens, "temperature": temperature, "seed": seed}
            )
            for m in chunk
        ]
        pre = [0.0] * len(chunk)
        toks: list[list[float]] = [[] for _ in chunk]

        def sink(i: int, ev: Event, pre: list[float] = pre, toks: list[list[float]] = toks) -> None:
            if isinstance(ev, Gate) and not bare.hold:
                if bare.name not in ev.verdict.scores:  # it raised: nothing to calibrate on
                    raise UsageError(f"cannot calibrate: {'; '.join(ev.verdict.reasons)}")
                pre[i] = ev.verdict.scores[bare.name]
            elif isinstance(ev, Finish) and bare.hold:
                assert ev.hold is not None, "a held-back answer finishes with its hold verdict"
                pre[i] = ev.hold.scores[bare.name]
            elif isinstance(ev, Token) and bare.name in ev.scores:
                toks[i].append(ev.scores[bare.name])

        guard.run(preps, sink)
        prefill += pre
        answers += toks
        if progress is not None:
            progress(len(prefill))
    block = conformal_threshold(prefill, budget)
    flag = None
    if flag_budget is not None and len(prefill) >= min_samples(flag_budget):
        flag = conformal_threshold(prefill, flag_budget)
    thresholds = PrefillThresholds(
        block=block,
        flag=flag,
        budget=budget,
        flag_budget=flag_budget if flag is not None else None,
        n=len(prefill),
        false_block_rate=float(np.mean(np.asarray(prefill) > block)),
    )
    decode = None if bare.needs_base else fit_rule(answers, budget, rule)
    calibrated = replace(detector, prefill=thresholds, decode=decode)
    return Calibration(calibrated, prefill, answers)


__all__ = ["Calibration", "calibrate", "read_traffic"]
