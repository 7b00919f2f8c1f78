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
from tripwire.guard.policy import Policy

Action = Literal["allow", "flag", "block"]
ACTIONS: tuple[Action, ...] = ("allow", "flag", "block")


@dataclass
class Verdict:
    """What the guard decided for one prompt or one answer, and why."""

    action: Action = "allow"
    reasons: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    stage: str = "prefill"
    by: list[str] = field(default_factory=list)  # the detector behind each reason
    # Each calibrated detector's own action (the verdict's is the strictest), for telemetry.
    labels: dict[str, Action] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "action": self.action,
            "stage": self.stage,
            "reasons": self.reasons,
            "scores": self.scores,
        }

    def add(self, detector: str, action: Action, reason: str) -> None:
        self.action = strictest([self.action, action])
        self.reasons.append(reason)
        self.by.append(detector)
        self.labels[detector] = strictest([self.labels.get(detector, "allow"), action])

    def merge(self, other: Verdict) -> None:
        """Add ``other``'s reasons from detectors not heard from yet (a rule that stays over
        its level, or a detector that keeps failing, is reported once per answer)."""
        for name, reason in zip(other.by, other.reasons, strict=True):
            if name not in self.by:
                self.add(name, other.action, reason)
                if name in other.scores:
                    self.scores[name] = other.scores[name]


def strictest(actions: Sequence[Action]) -> Action:
    return max(actions or ["allow"], key=ACTIONS.index)


def _capped(action: Action, cap: Action) -> Action:
    return min(action, cap, key=ACTIONS.index)


def _failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:300]


#: Per-detector scores, and the detectors that raised while scoring (name -> the error, one line).
Scores = dict[str, np.ndarray]
Errors = dict[str, str]


class Monitor:
    """Score residuals with every detector; gate prompts; run decode rules per answer row.

    The :class:`~tripwire.guard.policy.Policy` caps what each detector's crossing may do and
    says what a detector that raises while scoring decides (``on_error``); whether a ``block``
    is carried out (``mode``) is the engine's business.
    """

    def __init__(self, detectors: Sequence[GuardDetector], policy: Policy | None = None) -> None:
        names = [d.name for d in detectors]
        if len(set(names)) != len(names):
            raise ValueError(f"two detectors share a name: {sorted(names)}")
        self.detectors = list(detectors)
        self.policy = policy or Policy()
        self.layers = sorted({i for d in self.detectors for i in d.layers})
        self._weights: dict[str, tuple[torch.Tensor, float]] = {}
        self._gauss: dict[str, tuple[torch.Tensor, ...]] = {}

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

    def _gaussian(self, d: GuardDetector, x: torch.Tensor) -> torch.Tensor:
        """Mean over blocks of the z-scored log squared Mahalanobis distance, on ``x``'s device."""
        g = d.gaussian
        assert g is not None
        if d.name not in self._gauss:
            self._gauss[d.name] = tuple(
                torch.as_tensor(a, dtype=torch.float32, device=x.device)
                for a in (g.means, g.precisions, g.z_mean, g.z_std)
            )
        means, precs, zm, zs = self._gauss[d.name]
        blocks, width = means.shape
        c = x.reshape(x.shape[0], blocks, width) - means  # (rows, blocks, width)
        dist = (torch.einsum("rbi,bij->rbj", c, precs) * c).sum(-1) / width
        return ((dist.clamp(min=1e-12).log() - zm) / zs).mean(dim=1)

    def _one(
        self,
        d: GuardDetector,
        residuals: dict[int, torch.Tensor],
        logits: torch.Tensor | None,
        base_logits: torch.Tensor | None,
    ) -> np.ndarray | None:
        if d.needs_base:
            if d.hold or logits is None or base_logits is None:
                return None  # read at prefill only (diff-kl-gen: by the hold gate)
            return first_token_kl(logits, base_logits)
        if d.linear is not None:
            x = torch.cat([residuals[i] for i in d.layers], dim=1)
            w, b = self._linear(d, x)
            return (x @ w + b).double().cpu().numpy()
        if d.gaussian is not None:
            x = torch.cat([residuals[i] for i in d.layers], dim=1)
            return self._gaussian(d, x).double().cpu().numpy()
        return d.score({i: residuals[i].cpu().numpy() for i in d.layers})

    def score(
        self,
        residuals: dict[int, torch.Tensor],
        logits: torch.Tensor | None = None,
        base_logits: torch.Tensor | None = None,
    ) -> tuple[Scores, Errors]:
        """Suspicion per detector per row (higher = more suspicious), and the detectors that
        raised (their scores are missing; the others are unaffected).

        Linear detectors are one matrix product on the model's device, Mahalanobis detectors a
        few; the others score the residuals copied to the CPU; diffing detectors score ``logits``
        against ``base_logits`` (at prefill only: without them they give no score)."""
        out: Scores = {}
        errors: Errors = {}
        rows = next((r.shape[0] for r in residuals.values()), None)
        for d in self.detectors:
            try:
                s = self._one(d, residuals, logits, base_logits)
                if s is None:
                    continue
                s = np.asarray(s, dtype=np.float64).reshape(-1)
                if rows is not None and s.shape[0] != rows:
                    raise ValueError(f"{s.shape[0]} scores for {rows} rows")
            except Exception as exc:  # one failing detector decides by on_error, see gate()
                errors[d.name] = _failure(exc)
                continue
            out[d.name] = s
        return out, errors

    def _error(self, v: Verdict, name: str, error: str, where: str) -> None:
        closed = self.policy.on_error == "fail-closed"
        v.add(
            name,
            "block" if closed else "flag",
            f"{name} raised while scoring {where} ({error}); on_error {self.policy.on_error}",
        )

    def gate(
        self, scores: Scores, row: int, errors: Errors | None = None, stage: str = "prefill"
    ) -> Verdict:
        """The verdict for one row: block above a block threshold, else flag (each capped by the
        policy); a detector that raised decides by ``on_error``.

        ``stage`` ``prefill`` gates on the last prompt token (detectors that hold nothing back);
        ``hold`` on the tokens held back (``diff-kl-gen``), before any reaches the client (the
        policy's ``prefill`` caps apply: both decide before any output)."""
        v = Verdict(scores={k: float(s[row]) for k, s in scores.items()}, stage=stage)
        for d in self.detectors:
            if bool(d.hold) != (stage == "hold"):
                continue
            where = (
                f"over the first {d.hold} generated tokens, held back" if d.hold
                else "at the last prompt token"
            )  # fmt: skip
            if errors and d.name in errors:
                self._error(v, d.name, errors[d.name], where.removeprefix("at "))
                continue
            t, s = d.prefill, v.scores.get(d.name)
            if t is None or s is None:
                continue
            v.labels[d.name] = "allow"
            cap = self.policy.cap(d.name, "prefill")
            why = "" if cap == "block" else f"; the policy caps {d.name} at {cap}"
            if s > t.block:
                v.add(
                    d.name,
                    _capped("block", cap),
                    f"{d.name} {s:.3f} > block {t.block:.3f} (calibrated to {t.budget:.2%} false "
                    f"blocks on honest prompts) {where}{why}",
                )
            elif t.flag is not None and s > t.flag:
                at = f"{d.name} {s:.3f} > flag {t.flag:.3f} {where}"
                v.add(d.name, _capped("flag", cap), at + (why if cap == "allow" else ""))
        return v

    def hold_scores(self, kl_sums: np.ndarray) -> Scores:
        """The held-back detectors' scores from each row's summed per-position KL (a row that
        ended early counts its missing positions as 0, as the probe reads a short answer)."""
        return {d.name: kl_sums / d.hold for d in self.detectors if d.hold}

    def start(self, rows: int) -> np.ndarray:
        """Fresh decode statistics: ``(rows, n_detectors)`` zeros."""
        return np.zeros((rows, len(self.detectors)))

    def observe(
        self,
        stats: np.ndarray,
        scores: Scores,
        token_index: Sequence[int],
        errors: Errors | None = None,
    ) -> list[Verdict | None]:
        """Advance every row's statistics by one token (in place); a verdict where one alarms
        (``block`` unless the policy caps the detector) or where a detector raised."""
        alarms: list[Verdict | None] = [None] * stats.shape[0]

        def at(r: int) -> Verdict:
            alarms[r] = alarms[r] or Verdict(stage="decode")
            return alarms[r]  # type: ignore[return-value]

        for j, d in enumerate(self.detectors):
            if errors and d.name in errors:
                for r in range(stats.shape[0]):
                    where = f"generated token {token_index[r]}"
                    self._error(at(r), d.name, errors[d.name], where)
                continue
            if d.decode is None or d.name not in scores:
                continue
            stats[:, j] = d.decode.update(stats[:, j], scores[d.name])
            cap = self.policy.cap(d.name, "decode")
            why = "" if cap == "block" else f"; the policy caps {d.name} at {cap}"
            for r in np.flatnonzero(stats[:, j] > d.decode.level).tolist():
                v = at(r)
                v.add(
                    d.name,
                    cap,
                    f"{d.name} {d.decode.rule} {stats[r, j]:.3f} > level {d.decode.level:.3f} "
                    f"at generated token {token_index[r]}{why}",
                )
                v.scores[d.name] = float(scores[d.name][r])
        return alarms


def first_token_kl(logits: torch.Tensor, base_logits: torch.Tensor) -> np.ndarray:
    """``KL(model || base)`` of the next-token distributions, per row (>= 0), as
    ``tripwire probe defection --method diff-kl`` reads it at the last prompt token (and
    ``diff-kl-gen`` at each answer position)."""
    lp = torch.log_softmax(logits.double(), dim=-1)
    lq = torch.log_softmax(base_logits.double().to(logits.device), dim=-1)
    return (lp.exp() * (lp - lq)).sum(-1).clamp(min=0.0).cpu().numpy()


__all__ = ["ACTIONS", "Action", "Monitor", "Verdict", "first_token_kl", "strictest"]
