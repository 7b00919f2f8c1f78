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
from tripwire.guard.tools import could_be_call, parse_tool_calls


def notice(verdict: Verdict | None) -> str:
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
    ) -> None:
        self.params, self.model, self.prompt_tokens = params, model, prompt_tokens
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

    def _action(self, c: _Choice) -> Action:
        if c.finish is not None and c.finish.reason == "content_filter":
            return "block"
        actions: list[Action] = [self.gate.action if self.gate else "allow"]
        if c.finish is not None and c.finish.verdict is not None:  # the hold gate's verdict
            actions.append(c.finish.verdict.action)
        return strictest(actions)

    @property
    def action(self) -> str:
        return strictest([self._action(c) for c in self.choices])

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
        if v is not None and v.stage == "hold":
            ext["hold"] = v.to_dict()
        if self.params.scores:
            ext["scores"] = c.scores
        return ext

    def extension(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "prefill": self.gate.to_dict() if self.gate else None,
            "choices": [self._choice_ext(i, c) for i, c in enumerate(self.choices)],
        }

    def _message(self, c: _Choice) -> tuple[dict[str, Any], str]:
        fin = c.finish
        assert fin is not None
        if fin.reason == "content_filter":
            return {"role": "assistant", "content": notice(fin.verdict)}, "content_filter"
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
            choice = self._delta(i, {"content": notice(fin.verdict)}, "content_filter")
            choice["tripwire"] = self._choice_ext(i, c) | {"action": "block"}
            out = [self._chunk([choice])]
        else:
            message, reason = self._message(c)
            if message.get("tool_calls"):
                calls = [{"index": k, **tc} for k, tc in enumerate(message["tool_calls"])]
                out = [self._chunk([self._delta(i, {"tool_calls": calls})])]
            else:
                out = [self._chunk([self._delta(i, {"content": held})])] if held else []
            out.append(self._chunk([self._delta(i, {}, reason)]))
        if self.done and self.params.include_usage:
            out.append(self._chunk([], usage=self.usage()))
        return out


__all__ = ["Answer", "notice"]
