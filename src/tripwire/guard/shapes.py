"""The guard's events as OpenAI chat completion shapes, with the runtime proxy's blocked shape.

A blocked or cut choice has ``finish_reason: "content_filter"`` and a notice as its content
(``[tripwire: this answer was blocked (<reason>)]``); in a non-streamed answer the notice
replaces the text, in a stream it is the last chunk's delta (what was already sent stays sent).
Every answer carries a ``tripwire`` extension field: the strictest ``action``, the ``prefill``
verdict with the detectors' scores of the last prompt token, and one entry per choice (its
action, reasons and - when the request asked with ``"tripwire": {"scores": true}`` - the
per-token scores). Streamed chunks carry a choice's token scores in ``choices[i].tripwire``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tripwire.guard.chat import ChatParams
from tripwire.guard.engine import Event, Finish, Gate, Token
from tripwire.guard.monitor import Action, Verdict, strictest
from tripwire.guard.policy import Policy
from tripwire.guard.tools import could_be_call, parse_tool_calls


def notice(verdict: Verdict | None, text: str | None = None) -> str:
    """What replaces a blocked answer: the policy's ``text``, else the reasons."""
    if text is not None:
        return text
    reasons = "; ".join(verdict.reasons) if verdict and verdict.reasons else "detector score"
    return f"[tripwire: this answer was blocked ({reasons})]"


@dataclass
class _Choice:
    text: list[str] = field(default_factory=list)
    scores: dict[str, list[float]] = field(default_factory=dict)
    finish: Finish | None = None

    def add(self, tok: Token) -> None:
        self.text.append(tok.text)
        for name, s in tok.scores.items():
            self.scores.setdefault(name, []).append(s)


class Answer:
    """Collects one request's events; builds the completion or its stream chunks.

    ``on_done(answer, error)`` (telemetry) is called once: when the last choice finishes, or at
    :meth:`close` for an answer left unfinished (a client gone, an engine failure)."""

    def __init__(
        self,
        params: ChatParams,
        model: str,
        prompt_tokens: int,
        on_done: Callable[[Answer, str | None], None] | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.params, self.model, self.prompt_tokens = params, model, prompt_tokens
        self.policy = policy or Policy()
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.started_ns = time.time_ns()
        self._on_done = on_done
        self.gate: Verdict | None = None
        self.choices = [_Choice() for _ in range(params.n)]
        self._names = params.tool_names
        self._held = ["" for _ in range(params.n)]

    # -- shared ----------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return all(c.finish is not None for c in self.choices)

    def _would(self, c: _Choice) -> Action:
        """The action enforcing would take for this choice (what shadow mode reports)."""
        acts: list[Action] = [self.gate.action if self.gate else "allow"]
        if c.finish is not None:
            if c.finish.reason == "content_filter":
                acts.append("block")
            if c.finish.verdict is not None:
                acts.append(c.finish.verdict.action)
            if c.finish.hold is not None:  # the hold gate's verdict (diff-kl-gen)
                acts.append(c.finish.hold.action)
        return strictest(acts)

    def _action(self, c: _Choice) -> Action:
        return self._would(c) if self.policy.enforce else "allow"

    @property
    def action(self) -> Action:
        """The strictest action taken (``allow`` in shadow mode)."""
        return strictest([self._action(c) for c in self.choices])

    @property
    def shadow_action(self) -> Action | None:
        """In shadow mode, the strictest action enforcing would have taken; else ``None``."""
        if self.policy.enforce:
            return None
        return strictest([self._would(c) for c in self.choices])

    @property
    def gate_action(self) -> Action:
        """The prefill gate's action as taken (the streamed header)."""
        if self.gate is None or not self.policy.enforce:
            return "allow"
        return self.gate.action

    def headers(self, streamed: bool = False) -> dict[str, str]:
        """``x-tripwire-action`` (and in shadow mode ``x-tripwire-shadow-action``): the whole
        answer's, or for a stream the prefill gate's (decided before the first chunk)."""
        if streamed:
            out: dict[str, str] = {"x-tripwire-action": self.gate_action}
            if not self.policy.enforce:
                out["x-tripwire-shadow-action"] = self.gate.action if self.gate else "allow"
            return out
        out = {"x-tripwire-action": str(self.action)}
        if (shadow := self.shadow_action) is not None:
            out["x-tripwire-shadow-action"] = shadow
        return out

    def close(self, error: str | None = None) -> None:
        """Report an answer that will get no more events (``error``: why, if it failed)."""
        if self._on_done is not None:
            report, self._on_done = self._on_done, None
            report(self, error)

    def messages(self) -> list[tuple[dict[str, Any], str]]:
        """Each choice's assistant message and finish reason as the client got them (a choice
        left unfinished: its text so far, ``cancelled``)."""
        out = []
        for c in self.choices:
            if c.finish is None:
                out.append(({"role": "assistant", "content": "".join(c.text)}, "cancelled"))
            else:
                out.append(self._message(c))
        return out

    def usage(self) -> dict[str, int]:
        out = sum(c.finish.n_tokens for c in self.choices if c.finish is not None)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": out,
            "total_tokens": self.prompt_tokens + out,
        }

    def _choice_ext(self, i: int, c: _Choice) -> dict[str, Any]:
        v = c.finish.verdict if c.finish is not None else None
        reasons = v.reasons if v is not None else []
        ext: dict[str, Any] = {"index": i, "action": self._action(c), "reasons": reasons}
        if c.finish is not None and c.finish.hold is not None:
            ext["hold"] = c.finish.hold.to_dict()
        if not self.policy.enforce:
            ext["shadow_action"] = self._would(c)
        if self.params.scores:
            ext["scores"] = c.scores
        return ext

    def extension(self) -> dict[str, Any]:
        prefill: dict[str, Any] | None = self.gate.to_dict() if self.gate else None
        out: dict[str, Any] = {"action": self.action}
        if not self.policy.enforce:
            out["mode"] = "shadow"
            out["shadow_action"] = self.shadow_action
            if prefill is not None:
                prefill = {**prefill, "action": "allow", "shadow_action": prefill["action"]}
        out["prefill"] = prefill
        out["choices"] = [self._choice_ext(i, c) for i, c in enumerate(self.choices)]
        return out

    def _message(self, c: _Choice) -> tuple[dict[str, Any], str]:
        fin = c.finish
        assert fin is not None
        if fin.reason == "content_filter":
            content = notice(fin.verdict, self.policy.notice)
            return {"role": "assistant", "content": content}, "content_filter"
        text = "".join(c.text)
        calls = parse_tool_calls(text, self._names) if self._names else None
        if calls:
            return {"role": "assistant", "content": None, "tool_calls": calls}, "tool_calls"
        reason = "stop" if fin.reason == "cancelled" else fin.reason
        return {"role": "assistant", "content": text}, reason

    # -- non-streamed ----------------------------------------------------------------------
    def add(self, event: Event) -> None:
        if isinstance(event, Gate):
            self.gate = event.verdict
        elif isinstance(event, Token):
            self.choices[event.choice].add(event)
        else:
            self.choices[event.choice].finish = event
            if self.done:
                self.close()

    def completion(self) -> dict[str, Any]:
        choices = []
        for i, c in enumerate(self.choices):
            message, reason = self._message(c)
            choices.append(
                {"index": i, "message": message, "finish_reason": reason, "logprobs": None}
            )
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            "usage": self.usage(),
            "tripwire": self.extension(),
        }

    # -- streamed --------------------------------------------------------------------------
    def _chunk(self, choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": choices,
            **extra,
        }

    def _delta(self, i: int, delta: dict[str, Any], reason: str | None = None) -> dict[str, Any]:
        return {"index": i, "delta": delta, "finish_reason": reason, "logprobs": None}

    def chunks(self, event: Event) -> list[dict[str, Any]]:
        """The stream chunks one event becomes (the role chunks come with the gate)."""
        self.add(event)
        if isinstance(event, Gate):
            first = [
                self._delta(i, {"role": "assistant", "content": ""}) for i in range(self.params.n)
            ]
            return [self._chunk(first)]
        i = event.choice
        if isinstance(event, Token):
            text = event.text
            if self._names:
                self._held[i] += text
                text = ""
                if not could_be_call(self._held[i]):
                    text, self._held[i] = self._held[i], ""
            if not text and not (self.params.scores and event.scores):
                return []
            choice = self._delta(i, {"content": text})
            if self.params.scores:
                choice["tripwire"] = {"scores": event.scores}
            return [self._chunk([choice])]
        return self._finish_chunks(i, event)

    def _finish_chunks(self, i: int, fin: Finish) -> list[dict[str, Any]]:
        held, self._held[i] = self._held[i], ""
        c = self.choices[i]
        if fin.reason == "content_filter":
            choice = self._delta(
                i, {"content": notice(fin.verdict, self.policy.notice)}, "content_filter"
            )
            choice["tripwire"] = self._choice_ext(i, c) | {"action": "block"}
            out = [self._chunk([choice])]
        else:
            message, reason = self._message(c)
            if message.get("tool_calls"):
                calls = [{"index": k, **tc} for k, tc in enumerate(message["tool_calls"])]
                out = [self._chunk([self._delta(i, {"tool_calls": calls})])]
            else:
                out = [self._chunk([self._delta(i, {"content": held})])] if held else []
            last = self._delta(i, {}, reason)
            if fin.verdict is not None or fin.hold is not None:  # a flag, a hold, a shadow
                last["tripwire"] = self._choice_ext(i, c)
            out.append(self._chunk([last]))
        if self.done and self.params.include_usage:
            out.append(self._chunk([], usage=self.usage()))
        return out


__all__ = ["Answer", "notice"]
