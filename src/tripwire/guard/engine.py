"""The guard's generation loop: one prefill per batch, then one forward per token over the cache.

``Engine.run(requests, sink)`` takes a batch of requests (each with its own ``n`` choices,
``max_tokens``, ``temperature``/``top_p``/``seed`` and ``stop`` strings) and reports what
happens as events to ``sink(request_index, event)``:

1. **prefill**: every prompt once, left-padded, in one forward pass that fills the KV cache and
   hands the detectors the last prompt token's residuals; each request's :class:`Gate` verdict
   is decided here, before any token exists. A blocked request's choices finish at once with
   ``content_filter``; the others' rows are expanded to ``n`` per request (a cache index, no
   second pass over the prompt).
2. **decode**: each step samples one token per row (greedy at ``temperature == 0``, else
   seeded sampling, one generator per request), and feeds it back. With detectors, a token is
   emitted only after its own residual was read and the decode rules saw it; an alarm stops the
   row with ``content_filter`` and the token is never sent. Rows that finish (end of sequence,
   a stop string, ``max_tokens``, a cut, a cancelled client) leave the batch.
3. **hold** (with a detector that reads the first answer tokens, ``diff-kl-gen``): a row's
   first ``monitor.hold`` tokens are generated but held back while the clean base follows them
   with its own cache; the gate then decides on them (or on fewer, where the answer ended
   sooner). A blocked row finishes with ``content_filter`` and none of them is sent; otherwise
   they are released together and the row goes on. The choice's :class:`Finish` carries this
   verdict as ``hold``.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tripwire.guard.backend import GuardBackend
from tripwire.guard.monitor import Monitor, Verdict, first_token_kl


@dataclass
class GenRequest:
    """One chat completion request, tokenised."""

    prompt_ids: list[int]
    n: int = 1
    max_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    stop: Sequence[str] = ()
    cancelled: threading.Event = field(default_factory=threading.Event)


@dataclass
class Gate:
    """The prefill verdict of a request (always the first event of a request)."""

    verdict: Verdict


@dataclass
class Token:
    """Text released for one choice; ``scores`` are the detectors' scores of its tokens."""

    choice: int
    text: str
    scores: dict[str, float]


@dataclass
class Finish:
    """A choice is done: ``stop``, ``length``, ``content_filter`` or ``cancelled``."""

    choice: int
    reason: str
    n_tokens: int
    verdict: Verdict | None = None
    hold: Verdict | None = None  # the hold gate's verdict (``diff-kl-gen``), where one decided


Event = Gate | Token | Finish
Sink = Callable[[int, Event], None]


class _Row:
    """One choice being generated: its tokens, released text and stop-string handling."""

    def __init__(self, request: int, choice: int, req: GenRequest, tokenizer: Any) -> None:
        self.request, self.choice, self.req, self.tok = request, choice, req, tokenizer
        self.ids: list[int] = []
        self.sent = 0  # characters of the decoded text already released
        self.noted: Verdict | None = None  # decode verdicts that did not cut (flag, shadow)
        self.holding = False  # tokens are held back until the hold gate decides
        self.pending: list[Token] = []  # what the hold gate releases
        self.kl = 0.0  # summed KL(model || base) over the held-back positions
        self.hold: Verdict | None = None  # the hold gate's verdict, for the Finish

    def note(self, verdict: Verdict) -> None:
        if self.noted is None:
            self.noted = Verdict(stage=verdict.stage)
        self.noted.merge(verdict)

    def _held(self, text: str) -> int:
        """How many trailing characters could still start a stop string (or are a partial
        multi-byte character) and must be held back."""
        if text.endswith("\ufffd"):
            return 1
        hold = 0
        for s in self.req.stop:
            for k in range(min(len(s) - 1, len(text)), 0, -1):
                if text.endswith(s[:k]):
                    hold = max(hold, k)
                    break
        return hold

    def add(self, token: int) -> tuple[str, bool]:
        """Append ``token``; return (text to release now, whether a stop string ended it)."""
        self.ids.append(token)
        text = self.tok.decode(self.ids, skip_special_tokens=True)
        for s in self.req.stop:
            at = text.find(s, max(0, self.sent - len(s) + 1))
            if s and at >= 0:
                out, self.sent = text[self.sent : at], max(self.sent, at)
                return out, True
        safe = len(text) - self._held(text)
        out = text[self.sent : safe] if safe > self.sent else ""
        self.sent = max(self.sent, safe)
        return out, False

    def discard(self) -> None:
        """Nothing decoded so far will be released (a blocked hold)."""
        self.pending.clear()
        self.sent = len(self.tok.decode(self.ids, skip_special_tokens=True))

    def flush(self) -> str:
        text = self.tok.decode(self.ids, skip_special_tokens=True).rstrip("\ufffd")
        out = text[self.sent :]
        self.sent = len(text)
        return out


#: Temperatures below this are greedy: ``logits / T`` would overflow to inf (and NaN) first.
MIN_TEMPERATURE = 1e-6


def _sample(logits: torch.Tensor, req: GenRequest, gen: torch.Generator | None) -> torch.Tensor:
    """Next tokens for the rows of one request: argmax, or nucleus sampling with ``gen``."""
    if req.temperature < MIN_TEMPERATURE or gen is None:
        return logits.argmax(-1)
    scaled = logits.double().cpu() / req.temperature
    probs = torch.softmax(scaled - scaled.max(-1, keepdim=True).values, dim=-1)
    if req.top_p < 1.0:
        sorted_p, order = probs.sort(-1, descending=True)
        keep = sorted_p.cumsum(-1) - sorted_p < req.top_p
        sorted_p = sorted_p * keep
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return torch.multinomial(probs, 1, generator=gen).view(-1).to(logits.device)


class Engine:
    """Runs batches of :class:`GenRequest` on a backend with a monitor (see the module doc)."""

    def __init__(
        self,
        backend: GuardBackend,
        monitor: Monitor,
        tokenizer: Any,
        base: GuardBackend | None = None,
    ) -> None:
        """``base``: the clean base model's backend, for diffing detectors (same tokenizer)."""
        self.backend, self.monitor, self.tok, self.base = backend, monitor, tokenizer, base

    @property
    def enforce(self) -> bool:
        """Blocks and cuts are carried out (the policy's ``enforce`` mode, not ``shadow``)."""
        return self.monitor.policy.enforce

    def run(self, requests: Sequence[GenRequest], sink: Sink) -> None:
        prompts = [r.prompt_ids for r in requests]
        state, pre = self.backend.prefill(prompts)
        bstate = None
        if self.base is not None and self.monitor.needs_base:
            bstate, bpre = self.base.prefill(prompts)
            pre = pre._replace(base_logits=bpre.logits.to(pre.logits.device))
        hold = self.monitor.hold if pre.base_logits is not None else 0
        scores, errors = (
            self.monitor.score(pre.residuals, pre.logits, pre.base_logits)
            if self.monitor
            else ({}, {})
        )
        rows: list[_Row] = []
        for i, req in enumerate(requests):
            verdict = self.monitor.gate(scores, i, errors) if self.monitor else Verdict()
            sink(i, Gate(verdict))
            if verdict.action == "block" and self.enforce:
                for c in range(req.n):
                    sink(i, Finish(c, "content_filter", 0, verdict))
            else:
                rows.extend(_Row(i, c, req, self.tok) for c in range(req.n))
        if not rows:
            return
        self.backend.select(state, torch.tensor([r.request for r in rows]))
        which = torch.tensor([r.request for r in rows]).to(pre.logits.device)
        logits = pre.logits.index_select(0, which)
        held: _Held | None = None
        if hold and self.base is not None and bstate is not None and pre.base_logits is not None:
            self.base.select(bstate, torch.tensor([r.request for r in rows]))
            held = _Held(self.base, bstate, pre.base_logits.index_select(0, which), hold)
            for r in rows:
                r.holding = True
        gens = {
            i: torch.Generator().manual_seed(
                r.seed if r.seed is not None else random.getrandbits(62)
            )
            for i, r in enumerate(requests)
            if r.temperature >= MIN_TEMPERATURE
        }
        self._loop(rows, state, logits, gens, sink, held)

    def _next(
        self, rows: list[_Row], logits: torch.Tensor, gens: dict[int, torch.Generator]
    ) -> list[int]:
        out = torch.empty(len(rows), dtype=torch.long, device=logits.device)
        by_req: dict[int, list[int]] = {}
        for k, r in enumerate(rows):
            by_req.setdefault(r.request, []).append(k)
        for i, ks in by_req.items():
            idx = torch.tensor(ks, device=logits.device)
            out[idx] = _sample(logits.index_select(0, idx), rows[ks[0]].req, gens.get(i))
        return [int(t) for t in out.tolist()]

    def _loop(
        self,
        rows: list[_Row],
        state: Any,
        logits: torch.Tensor,
        gens: dict[int, torch.Generator],
        sink: Sink,
        held: _Held | None = None,
    ) -> None:
        eos = self.backend.eos_ids
        stats = self.monitor.start(len(rows))
        while rows:
            if held is not None:
                held.add_kl(rows, logits)
            tokens = self._next(rows, logits, gens)
            done: dict[int, Finish] = {}
            for k, r in enumerate(rows):
                if r.req.cancelled.is_set():
                    done[k] = Finish(r.choice, "cancelled", len(r.ids))
                elif tokens[k] in eos:
                    done[k] = Finish(r.choice, "stop", len(r.ids))
            if not self.monitor:
                self._release(rows, tokens, {}, [None] * len(rows), done, sink, self.enforce)
                rows, tokens, stats = self._compact(state, rows, tokens, stats, done, sink)
                if rows:
                    logits = self.backend.step(state, torch.tensor(tokens)).logits
                continue
            # With detectors, a token is released only after its own residual was read: by the
            # forward that also computes the next logits.
            if held is not None:
                self._decide_holds(rows, done, held, sink)
            rows, tokens, stats = self._compact(state, rows, tokens, stats, done, sink, held)
            if not rows:
                return
            readout = self.backend.step(state, torch.tensor(tokens))
            if held is not None:
                held.step(tokens)
            scores, errors = self.monitor.score(readout.residuals)
            alarms = self.monitor.observe(stats, scores, [len(r.ids) for r in rows], errors)
            done = {}
            self._release(rows, tokens, scores, alarms, done, sink, self.enforce)
            if held is not None:
                self._decide_holds(rows, done, held, sink)
            keep = [k for k in range(len(rows)) if k not in done]
            rows, tokens, stats = self._compact(state, rows, tokens, stats, done, sink, held)
            if rows:
                idx = torch.tensor(keep, dtype=torch.long, device=readout.logits.device)
                logits = readout.logits.index_select(0, idx)
            if held is not None and not any(r.holding for r in rows):
                held = None  # every row is past its hold: the base's cache is dropped

    def _decide_holds(
        self, rows: list[_Row], done: dict[int, Finish], held: _Held, sink: Sink
    ) -> None:
        """Gate every holding row that has its ``held.hold`` tokens or is finishing now: block
        it (nothing it generated is sent; in shadow mode the block is only reported) or
        release what it held."""
        for k, r in enumerate(rows):
            if not r.holding:
                continue
            fin = done.get(k)
            if fin is not None and fin.reason in ("content_filter", "cancelled"):
                r.holding = False
                r.discard()
                continue
            if fin is None and len(r.ids) < held.hold:
                continue
            r.holding = False
            r.hold = self.monitor.gate(
                self.monitor.hold_scores(np.asarray([r.kl])), 0, stage="hold"
            )
            if r.hold.action == "block" and self.enforce:
                r.discard()
                done[k] = Finish(r.choice, "content_filter", len(r.ids), r.hold, r.hold)
                continue
            for ev in r.pending:
                sink(r.request, ev)
            r.pending.clear()

    @staticmethod
    def _release(
        rows: list[_Row],
        tokens: list[int],
        scores: dict[str, np.ndarray],
        alarms: list[Verdict | None],
        done: dict[int, Finish],
        sink: Sink,
        enforce: bool = True,
    ) -> None:
        """Release each live row's new token (or cut it on an enforced ``block`` alarm; other
        alarms are noted on the row and reported when it finishes); record who finished."""
        for k, r in enumerate(rows):
            if k in done:
                continue
            alarm = alarms[k]
            if alarm is not None and alarm.action == "block" and enforce:
                r.note(alarm)
                done[k] = Finish(r.choice, "content_filter", len(r.ids), r.noted)
                continue
            if alarm is not None:
                r.note(alarm)
            own = {name: float(s[k]) for name, s in scores.items()}
            text, stopped = r.add(tokens[k])
            if text or own:
                ev = Token(r.choice, text, own)
                if r.holding:
                    r.pending.append(ev)
                else:
                    sink(r.request, ev)
            if stopped:
                done[k] = Finish(r.choice, "stop", len(r.ids))
            elif len(r.ids) >= r.req.max_tokens:
                done[k] = Finish(r.choice, "length", len(r.ids))

    def _compact(
        self,
        state: Any,
        rows: list[_Row],
        tokens: list[int],
        stats: np.ndarray,
        done: dict[int, Finish],
        sink: Sink,
        held: _Held | None = None,
    ) -> tuple[list[_Row], list[int], np.ndarray]:
        """Report the finished rows and drop them from the batch and the decode state."""
        if not done:
            return rows, tokens, stats
        for k, fin in done.items():
            rest = rows[k].flush() if fin.reason in ("length", "content_filter") else ""
            if rest:
                sink(rows[k].request, Token(rows[k].choice, rest, {}))
            if fin.verdict is None:
                fin.verdict = rows[k].noted
            if fin.hold is None:
                fin.hold = rows[k].hold
            sink(rows[k].request, fin)
        keep = [k for k in range(len(rows)) if k not in done]
        if keep:
            self.backend.select(state, torch.tensor(keep))
            if held is not None:
                held.select(keep)
        return [rows[k] for k in keep], [tokens[k] for k in keep], stats[keep]


class _Held:
    """The clean base following the held-back answers: its decode state and next logits."""

    def __init__(self, base: GuardBackend, state: Any, logits: torch.Tensor, hold: int) -> None:
        self.base, self.state, self.logits, self.hold = base, state, logits, hold

    def add_kl(self, rows: list[_Row], logits: torch.Tensor) -> None:
        """Add each holding row's KL at the position its next token is sampled from."""
        kl = first_token_kl(logits, self.logits)
        for k, r in enumerate(rows):
            if r.holding and len(r.ids) < self.hold:
                r.kl += float(kl[k])

    def step(self, tokens: list[int]) -> None:
        self.logits = self.base.step(self.state, torch.tensor(tokens)).logits

    def select(self, keep: list[int]) -> None:
        self.base.select(self.state, torch.tensor(keep))
        self.logits = self.logits.index_select(
            0, torch.tensor(keep, dtype=torch.long, device=self.logits.device)
        )


__all__ = ["Engine", "Event", "Finish", "Gate", "GenRequest", "Sink", "Token"]
