"""What a chat completion hands its client, read into the events the monitors score.

Every choice is read, in every shape the OpenAI chat-completions schema gives a message:
``content`` as a string, null, or a list of ``text`` / ``refusal`` parts; ``refusal``;
``tool_calls`` (``function`` and ``custom``); the legacy ``function_call``; and the reasoning text
some servers add (``reasoning_content``, ``reasoning``). Strings under any other key of a message
are scored with its text. A stream's deltas are added up per choice ``index`` first
(:func:`assemble_stream`), tool-call and ``function_call`` fragments included.

What cannot be read as text (image, audio or file parts, ``audio`` output, an unknown tool-call
type) or is larger than a monitor reads (text over ``MAX_CONTENT_CHARS``, arguments over
``MAX_ARGUMENTS_BYTES``, a tool name over ``MAX_TOOL_CHARS``, more than ``MAX_ANSWER_EVENTS``
events) is *refused*: the proxy blocks the answer and names why. A shape the schema does not allow
(a message that is a string, a tool call's ``function`` that is a list, a stream ``index`` that is
not a non-negative integer) is a malformed upstream answer: :class:`UpstreamError` (502).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from tripwire.runtime import jsonsafe
from tripwire.runtime.errors import UpstreamError
from tripwire.runtime.events import MAX_ARGUMENTS_BYTES, MAX_CONTENT_CHARS, Event

MAX_ANSWER_EVENTS = 1000
MAX_TOOL_CHARS = 200
_TEXT_KEYS = ("refusal", "reasoning_content")
_STREAM_KEYS = ("content", "refusal", "reasoning_content", "tool_calls", "function_call")


def malformed(where: str, what: str) -> UpstreamError:
    return UpstreamError(f"upstream answer is not a chat completion: {where} {what}")


def _kind(v: Any) -> str:
    return "null" if v is None else type(v).__name__


def _label(v: Any) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "", str(v))[:40] or "unnamed"


def _strings(v: Any) -> list[str]:
    """Every string inside ``v`` (depth-first, without recursion)."""
    out, stack = [], [v]
    while stack:
        x = stack.pop()
        if isinstance(x, str):
            out.append(x)
        elif isinstance(x, dict):
            stack.extend(reversed(list(x.values())))
        elif isinstance(x, list):
            stack.extend(reversed(x))
    return out


@dataclass
class Reading:
    """The events an answer adds up to, and why parts of it could not be scored."""

    agent: str
    model: str | None
    session: str | None
    events: list[Event] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)

    def refuse(self, why: str) -> None:
        if why not in self.refused:
            self.refused.append(why)

    def _add(self, etype: str, content: str | None, tool: str | None, args: Any) -> None:
        if len(self.events) >= MAX_ANSWER_EVENTS:
            self.refuse(f"unscorable:over-{MAX_ANSWER_EVENTS}-events")
            return
        ev = Event(self.agent, etype, content, tool, args, self.session, self.model, "proxy")
        self.events.append(ev)

    def message(self, msg: Any, where: str) -> None:
        """Read one choice's ``message`` (or a stream's assembled one)."""
        if not isinstance(msg, dict):
            raise malformed(where, f"is {_kind(msg)}, not an object")
        texts: list[str] = []
        for key, val in msg.items():
            at = f"{where}.{key}"
            if val is None or key == "role":
                continue
            if key == "content":
                self._content(val, at, texts)
            elif key == "tool_calls":
                self._tool_calls(val, at)
            elif key == "function_call":
                self._function(val, at)
            elif key == "audio":
                self.refuse("unscorable:audio")
            elif key in _TEXT_KEYS:
                if not isinstance(val, str):
                    raise malformed(at, f"is {_kind(val)}, not a string")
                texts.append(val)
            else:
                texts.extend(_strings(val))
        text = "\n".join(t for t in texts if t)
        if len(text) > MAX_CONTENT_CHARS:
            self.refuse(f"unscorable:text-over-{MAX_CONTENT_CHARS}-chars")
        if text:
            self._add("message", text[:MAX_CONTENT_CHARS], None, None)

    def _content(self, val: Any, at: str, texts: list[str]) -> None:
        if isinstance(val, str):
            texts.append(val)
            return
        if not isinstance(val, list):
            raise malformed(at, f"is {_kind(val)}, not a string, null or a list of parts")
        for i, part in enumerate(val):
            if not isinstance(part, dict):
                raise malformed(f"{at}[{i}]", f"is {_kind(part)}, not a content part")
            kind = part.get("type")
            if kind in ("text", "refusal"):
                text = part.get(kind)
                if not isinstance(text, str):
                    raise malformed(f"{at}[{i}].{kind}", f"is {_kind(text)}, not a string")
                texts.append(text)
            else:
                self.refuse(f"unscorable:{_label(kind)}-part")

    def _tool_calls(self, val: Any, at: str) -> None:
        if not isinstance(val, list):
            raise malformed(at, f"is {_kind(val)}, not a list")
        for i, tc in enumerate(val):
            where = f"{at}[{i}]"
            if not isinstance(tc, dict):
                raise malformed(where, f"is {_kind(tc)}, not a tool call")
            kind = tc.get("type") or ("custom" if "custom" in tc else "function")
            if kind == "function":
                self._function(tc.get("function"), f"{where}.function")
            elif kind == "custom":
                self._custom(tc.get("custom"), f"{where}.custom")
            else:
                self.refuse(f"unscorable:{_label(kind)}-tool-call")

    def _name(self, name: Any, at: str) -> str:
        if name is None or name == "":
            return "unknown_tool"
        if not isinstance(name, str):
            raise malformed(at, f"is {_kind(name)}, not a string")
        if len(name) > MAX_TOOL_CHARS:
            self.refuse(f"unscorable:tool-name-over-{MAX_TOOL_CHARS}-chars")
        return name[:MAX_TOOL_CHARS]

    def _function(self, fn: Any, at: str) -> None:
        if not isinstance(fn, dict):
            raise malformed(at, f"is {_kind(fn)}, not an object")
        name = self._name(fn.get("name"), f"{at}.name")
        raw = fn.get("arguments")
        if raw is None or isinstance(raw, dict):
            args = raw
        elif isinstance(raw, str):
            try:
                parsed = jsonsafe.loads(raw, what="arguments") if raw.strip() else None
            except jsonsafe.JsonError:
                parsed = raw
            args = parsed if isinstance(parsed, dict) or parsed is None else {"raw": parsed}
        else:
            raise malformed(f"{at}.arguments", f"is {_kind(raw)}, not a string")
        self._add("tool_call", None, name, self._bounded(args))

    def _custom(self, c: Any, at: str) -> None:
        if not isinstance(c, dict):
            raise malformed(at, f"is {_kind(c)}, not an object")
        name = self._name(c.get("name"), f"{at}.name")
        inp = c.get("input")
        if inp is not None and not isinstance(inp, str):
            raise malformed(f"{at}.input", f"is {_kind(inp)}, not a string")
        self._add("tool_call", None, name, self._bounded({"input": inp} if inp else None))

    def _bounded(self, args: dict[str, Any] | None) -> dict[str, Any] | None:
        if not args:
            return None
        text = json.dumps(args, default=str)
        if len(text) <= MAX_ARGUMENTS_BYTES:
            return args
        self.refuse(f"unscorable:arguments-over-{MAX_ARGUMENTS_BYTES}-bytes")
        return {"raw": text[: MAX_ARGUMENTS_BYTES - 64]}


def _index(v: Any, where: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise malformed(where, f"is {v!r:.40}, not a non-negative integer")
    return v


def _fragment(v: Any, where: str) -> str:
    if v is None:
        return ""
    if not isinstance(v, str):
        raise malformed(where, f"is {_kind(v)}, not a string")
    return v


def _obj(v: Any, where: str) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise malformed(where, f"is {_kind(v)}, not an object")
    return v


@dataclass
class _Choice:
    text: dict[str, list[str]] = field(default_factory=dict)
    parts: list[Any] = field(default_factory=list)
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    function_call: dict[str, str] | None = None
    other: dict[str, list[Any]] = field(default_factory=dict)

    def add(self, delta: dict[str, Any], at: str) -> None:
        content = delta.get("content")
        if isinstance(content, list):
            self.parts.extend(content)
        else:
            self.text.setdefault("content", []).append(_fragment(content, f"{at}.content"))
        for key in _TEXT_KEYS:
            self.text.setdefault(key, []).append(_fragment(delta.get(key), f"{at}.{key}"))
        calls = delta.get("tool_calls")
        if calls is not None and not isinstance(calls, list):
            raise malformed(f"{at}.tool_calls", f"is {_kind(calls)}, not a list")
        for j, tc in enumerate(calls or []):
            self._call(_obj(tc, f"{at}.tool_calls[{j}]"), f"{at}.tool_calls[{j}]")
        if delta.get("function_call") is not None:
            fc = _obj(delta["function_call"], f"{at}.function_call")
            acc = self.function_call or {"name": "", "arguments": ""}
            for k in acc:
                acc[k] += _fragment(fc.get(k), f"{at}.function_call.{k}")
            self.function_call = acc
        for key, val in delta.items():
            if key not in _STREAM_KEYS and key != "role" and val is not None:
                self.other.setdefault(key, []).append(val)

    def _call(self, tc: dict[str, Any], at: str) -> None:
        slot = self.calls.setdefault(_index(tc.get("index", 0), f"{at}.index"), {})
        if tc.get("type") is not None:
            slot["type"] = tc["type"]
        for part, keys in (("function", ("name", "arguments")), ("custom", ("name", "input"))):
            if tc.get(part) is None:
                continue
            got = _obj(tc[part], f"{at}.{part}")
            acc = slot.setdefault(part, dict.fromkeys(keys, ""))
            for k in keys:
                acc[k] += _fragment(got.get(k), f"{at}.{part}.{k}")

    def message(self) -> dict[str, Any]:
        msg: dict[str, Any] = {k: "".join(v) or None for k, v in self.text.items()}
        if self.parts:
            msg["content"] = [{"type": "text", "text": msg.get("content") or ""}, *self.parts]
        if self.calls:
            for slot in self.calls.values():
                if "function" not in slot and "custom" not in slot:
                    slot["function"] = {}
            msg["tool_calls"] = [self.calls[i] for i in sorted(self.calls)]
        msg["function_call"] = self.function_call
        for key, vals in self.other.items():
            msg[key] = "".join(vals) if all(isinstance(v, str) for v in vals) else vals
        return msg


def assemble_stream(chunks: list[Any]) -> dict[int, dict[str, Any]]:
    """The message each choice of a stream of chat-completion chunks adds up to, by index."""
    choices: dict[int, _Choice] = {}
    for n, chunk in enumerate(chunks):
        at = f"stream chunk {n}"
        if not isinstance(chunk, dict):
            raise malformed(at, f"is {_kind(chunk)}, not an object")
        if chunk.get("error") is not None and not chunk.get("choices"):
            raise UpstreamError("upstream stream reported an error")
        listed = chunk.get("choices")
        if listed is None:
            continue
        if not isinstance(listed, list):
            raise malformed(f"{at}.choices", f"is {_kind(listed)}, not a list")
        for k, choice in enumerate(listed):
            where = f"{at}.choices[{k}]"
            if not isinstance(choice, dict):
                raise malformed(where, f"is {_kind(choice)}, not a choice")
            idx = _index(choice.get("index", 0), f"{where}.index")
            delta = _obj(choice.get("delta"), f"{where}.delta")
            choices.setdefault(idx, _Choice()).add(delta, f"{where}.delta")
    return {i: choices[i].message() for i in sorted(choices)}


__all__ = ["MAX_ANSWER_EVENTS", "MAX_TOOL_CHARS", "Reading", "assemble_stream", "malformed"]
