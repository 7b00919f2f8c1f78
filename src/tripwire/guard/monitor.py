"""The guard's decisions: the prefill gate (allow / flag / block before the first token) and the
decode monitor (a sequential rule per detector per answer that can stop it mid-way).

Both read the residuals the backend's hooks handed over from the forward pass that was running
anyway; nothing here runs the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from tripwire.guard.detectors import GuardDetector

Action = Literal["allow", "flag", "block"]
ACTIONS: tuple[Action, ...] = ("allow", "flag", "block")


@dataclass
class Verdict:
    """What the guard decided for one prompt or one answer, and why."""

    action: Action = "allow"
    reasons: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    stage: str = "prefill"
    # Each calibrated detector's own action (the verdict's is the strictest), for telemetry.
    labels: dict[str, Action] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "action": self.action,
            "stage": self.stage,
            "reasons": self.reasons,
            "scores": self.scores,
        }


def strictest(actions: Sequence[Action]) -> Action:
    return max(actions or ["allow"], key=ACTIONS.index)


class Monitor:
    """Score residuals with every detector; gate prompts; run decode rules per answer row."""

    def __init__(self, detectors: Sequence[GuardDetector]) -> None:
        names = [d.name for d in detectors]
        if len(set(names)) != len(names):
            raise ValueError(f"two detectors share a name: {sorted(names)}")
        self.detectors = list(detectors)
        self.layers = sorted({i for d in self.detectors for i in d.layers})
        self._weights: dict[str, tuple[torch.Tensor, float]] = {}

    def __bool__(self) -> bool:
        return bool(self.detectors)

    @property
    def needs_base(self) -> bool:
        """Some detector diffs the served model against the clean base (``diff-kl``)."""
        return any(d.needs_base for d in self.detectors)

    @property
    def hold(self) -> int:
        """Generated tokens held back before the last gate decides (``diff-kl-gen``: 8)."""
        return max((d.hold for d in self.detectors), default=0)

    def _linear(self, d: GuardDetector, like: torch.Tensor) -> tuple[torch.Tensor, float]:
        if d.name not in self._weights:
            assert d.linear is not None
            w, b = d.linear
            self._weights[d.name] = (torch.as_tensor(w, dtype=torch.float32, device=like.device), b)
        return self._weights[d.name]

    def score(
        self,
        residuals: dict[int, torch.Tensor],
        logits: torch.Tensor | None = None,
        base_logits: torch.Tensor | None = None,
    ) -> dict[str, np.ndarray]:
        """Suspicion per detector per row (higher = more suspicious).

        Linear detectors are one matrix product on the model's device; the others (outlier
        detectors) score the residuals copied to the CPU; diffing detectors score ``logits``
        against ``base_logits`` (at prefill only: without them they give no score)."""
        out: dict[str, np.ndarray] = {}
        diffing = [d for d in self.detectors if d.needs_base and not d.hold]
        if diffing and logits is not None and base_logits is not None:
            kl = first_token_kl(logits, base_logits)
            out.update({d.name: kl for d in diffing})
        linear = [d for d in self.detectors if d.linear is not None and not d.needs_base]
        if linear:
            cols = []
            for d in linear:
                x = torch.cat([residuals[i] for i in d.layers], dim=1)
                w, b = self._linear(d, x)
                cols.append(x @ w + b)
            scores = torch.stack(cols, dim=1).double().cpu().numpy()
            out.update({d.name: scores[:, j] for j, d in enumerate(linear)})
        rest = [d for d in self.detectors if d.linear is None and not d.needs_base]
        if rest:
            arrays = {i: residuals[i].cpu().numpy() for i in {i for d in rest for i in d.layers}}
            out.update({d.name: d.score(arrays) for d in rest})
        return out

    def gate(self, scores: dict[str, np.ndarray], row: int, stage: str = "prefill") -> Verdict:
        """The verdict for one row: block above a block threshold, else flag above a flag one.

        ``stage`` ``prefill`` gates on the last prompt token (detectors that hold nothing back);
        ``hold`` on the tokens held back (``diff-kl-gen``), before any reaches the client."""
        v = Verdict(scores={k: float(s[row]) for k, s in scores.items()}, stage=stage)
        for d in self.detectors:
            t, s = d.prefill, v.scores.get(d.name)
            if t is None or s is None or bool(d.hold) != (stage == "hold"):
                continue
            where = (
                f"over the first {d.hold} generated tokens, held back" if d.hold
                else "at the last prompt token"
            )  # fmt: skip
            v.labels[d.name] = "allow"
            if s > t.block:
                v.action = v.labels[d.name] = "block"
                v.reasons.append(
                    f"{d.name} {s:.3f} > block {t.block:.3f} (calibrated to {t.budget:.2%} false "
                    f"blocks on honest prompts) {where}"
                )
            elif t.flag is not None and s > t.flag:
                v.action = strictest([v.action, "flag"])
                v.labels[d.name] = "flag"
                v.reasons.append(f"{d.name} {s:.3f} > flag {t.flag:.3f} {where}")
        return v

    def hold_scores(self, kl_sums: np.ndarray) -> dict[str, np.ndarray]:
        """The held-back detectors' scores from each row's summed per-position KL (a row that
        ended early counts its missing positions as 0, as the probe reads a short answer)."""
        return {d.name: kl_sums / d.hold for d in self.detectors if d.hold}

    def start(self, rows: int) -> np.ndarray:
        """Fresh decode statistics: ``(rows, n_detectors)`` zeros."""
        return np.zeros((rows, len(self.detectors)))

    def observe(
        self, stats: np.ndarray, scores: dict[str, np.ndarray], token_index: Sequence[int]
    ) -> list[Verdict | None]:
        """Advance every row's statistics by one token (in place); a verdict where one alarms."""
        alarms: list[Verdict | None] = [None] * stats.shape[0]
        for j, d in enumerate(self.detectors):
            if d.decode is None or d.name not in scores:
                continue
            stats[:, j] = d.decode.update(stats[:, j], scores[d.name])
            for r in np.flatnonzero(stats[:, j] > d.decode.level).tolist():
                v = alarms[r] or Verdict(action="block", stage="decode")
                v.reasons.append(
                    f"{d.name} {d.decode.rule} {stats[r, j]:.3f} > level {d.decode.level:.3f} "
                    f"at generated token {token_index[r]}"
                )
                v.scores[d.name] = float(scores[d.name][r])
                v.labels[d.name] = "block"
                alarms[r] = v
        return alarms


def first_token_kl(logits: torch.Tensor, base_logits: torch.Tensor) -> np.ndarray:
    """``KL(model || base)`` of the next-token distributions, per row (>= 0), as
    ``tripwire probe defection --method diff-kl`` reads it at the last prompt token (and
    ``diff-kl-gen`` at each answer position)."""
    lp = torch.log_softmax(logits.double(), dim=-1)
    lq = torch.log_softmax(base_logits.double().to(logits.device), dim=-1)
    return (lp.exp() * (lp - lq)).sum(-1).clamp(min=0.0).cpu().numpy()


__all__ = ["ACTIONS", "Action", "Monitor", "Verdict", "first_token_kl", "strictest"]
