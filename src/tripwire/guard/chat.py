"""A chat completion request, checked: OpenAI's body -> :class:`ChatParams`, or one-line errors.

Every problem raises :class:`RequestError` (a :class:`~tripwire.errors.UsageError`) carrying the
HTTP status, the offending parameter and OpenAI's error code, so the server answers a 4xx in
OpenAI's error shape and the in-process :class:`~tripwire.guard.Guard` raises the same message.

Messages are normalised for the model's chat template: ``developer`` is ``system``; content may
be a string or a list of text parts; an assistant message's ``tool_calls`` become the JSON the
model was asked to write (see :mod:`tripwire.guard.tools`); a ``tool`` message becomes a user
message ``[tool result <id>] <content>`` (chat templates disagree on a ``tool`` role).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tripwire.errors import UsageError
from tripwire.guard.tools import function_names, tool_prompt
from tripwire.models.chat import Message, render_chat

MAX_N = 16
MAX_STOP = 4
ROLES = ("system", "developer", "user", "assistant", "tool")


class RequestError(UsageError):
    """A bad request: ``status`` (4xx), ``param`` and OpenAI's ``code``."""

    def __init__(
        self, message: str, param: str | None = None, status: int = 400, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.param, self.status, self.code = param, status, code


@dataclass
class ChatParams:
    """The parts of a chat completion request the guard uses."""

    messages: list[Message]
    model: str | None = None
    n: int = 1
    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stream: bool = False
    include_usage: bool = False
    tools: list[dict[str, Any]] | None = None
    tool_choice: Any = None
    scores: bool = False

    @property
    def tool_names(self) -> list[str]:
        """The functions a reply may call (none when ``tool_choice`` is ``"none"``)."""
        if not self.tools or self.tool_choice == "none":
            return []
        return function_names(self.tools)


def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, p in enumerate(content):
            if (
                not isinstance(p, dict)
                or p.get("type") != "text"
                or not isinstance(p.get("text"), str)
            ):
                raise RequestError(
                    f"{where}.content[{j}]: only text parts {{'type': 'text', 'text': ...}} are "
                    "supported",
                    f"{where}.content",
                )
            parts.append(p["text"])
        return "".join(parts)
    raise RequestError(f"{where}.content must be a string or a list of text parts", where)


def normalize_messages(raw: Any) -> list[Message]:
    """OpenAI chat messages -> ``{"role", "content"}`` dicts for the chat template."""
    if not isinstance(raw, list) or not raw:
        raise RequestError("'messages' must be a non-empty list of chat messages", "messages")
    out: list[Message] = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise RequestError(f"{where} must be an object with 'role' and 'content'", where)
        role = m.get("role")
        if role not in ROLES:
            raise RequestError(
                f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}", f"{where}.role"
            )
        calls = m.get("tool_calls") if role == "assistant" else None
        if calls:
            if not isinstance(calls, list) or not all(
                isinstance(c, dict) and isinstance(c.get("function"), dict) for c in calls
            ):
                raise RequestError(f"{where}.tool_calls must be a list of function calls", where)
            written = [
                {"name": c["function"].get("name"), "arguments": c["function"].get("arguments")}
                for c in calls
            ]
            text = _text(m.get("content") or "", where)
            out.append(
                {"role": "assistant", "content": (text + "\n" + json.dumps(written)).strip()}
            )
            continue
        if "content" not in m or m["content"] is None:
            raise RequestError(f"{where} has no 'content'", f"{where}.content")
        text = _text(m["content"], where)
        if role == "tool":
            out.append(
                {"role": "user", "content": f"[tool result {m.get('tool_call_id', '')}] {text}"}
            )
        else:
            out.append({"role": "system" if role == "developer" else str(role), "content": text})
    return out


def _number(body: dict[str, Any], name: str, lo: float, hi: float, default: Any) -> Any:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise RequestError(f"'{name}' must be a number in [{lo}, {hi}], got {value!r}", name)
    return value


def _int(body: dict[str, Any], name: str, lo: int, hi: int | None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < lo
        or (hi is not None and value > hi)
    ):
        upper = "" if hi is None else f" and at most {hi}"
        raise RequestError(
            f"'{name}' must be an integer of at least {lo}{upper}, got {value!r}", name
        )
    return value


def _stop(raw: Any) -> list[str]:
    stops = [raw] if isinstance(raw, str) else raw
    if stops is None:
        return []
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise RequestError("'stop' must be a non-empty string or a list of them", "stop")
    if len(stops) > MAX_STOP:
        raise RequestError(f"'stop' takes at most {MAX_STOP} strings, got {len(stops)}", "stop")
    return list(stops)


def _tools(body: dict[str, Any]) -> tuple[list[dict[str, Any]] | None, Any]:
    tools, choice = body.get("tools"), body.get("tool_choice")
    if tools is None:
        if choice not in (None, "none"):
            raise RequestError("'tool_choice' needs 'tools'", "tool_choice")
        return None, choice
    if not isinstance(tools, list) or not tools:
        raise RequestError("'tools' must be a non-empty list of functions", "tools")
    try:
        names = function_names(tools)
    except UsageError as exc:
        raise RequestError(str(exc), "tools") from None
    if isinstance(choice, dict):
        fn = choice.get("function")
        name = fn.get("name") if isinstance(fn, dict) else None
        if choice.get("type") != "function" or name not in names:
            raise RequestError(
                f"'tool_choice' names function {name!r}, which is not in 'tools'", "tool_choice"
            )
    elif choice not in (None, "none", "auto", "required"):
        raise RequestError(
            "'tool_choice' must be none, auto, required or a function", "tool_choice"
        )
    return tools, choice


def _no_surrogates(body: dict[str, Any]) -> None:
    """A JSON ``"\\ud800"`` escape decodes to a lone surrogate, which no tokenizer encodes."""
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = exc.object[exc.start : exc.end].encode("unicode_escape").decode()
        raise RequestError(f"the body holds {bad}, a lone UTF-16 surrogate, not text") from None
    except (TypeError, ValueError, RecursionError):
        pass  # not JSON text (an in-process body): the field checks below say what is wrong


def parse_body(body: Any) -> ChatParams:
    """Check an OpenAI chat completion body; unknown fields are ignored, as OpenAI's are not."""
    if not isinstance(body, dict):
        raise RequestError("the body must be a JSON object (a chat completion request)")
    _no_surrogates(body)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise RequestError("'model' must be a string", "model")
    ext = body.get("tripwire") or {}
    if not isinstance(ext, dict):
        raise RequestError("'tripwire' must be an object such as {\"scores\": true}", "tripwire")
    options = body.get("stream_options") or {}
    tools, choice = _tools(body)
    max_tokens = _int(body, "max_completion_tokens", 1, None) or _int(body, "max_tokens", 1, None)
    return ChatParams(
        messages=normalize_messages(body.get("messages")),
        model=model,
        n=_int(body, "n", 1, MAX_N) or 1,
        max_tokens=max_tokens,
        temperature=float(_number(body, "temperature", 0.0, 2.0, 1.0)),
        top_p=float(_number(body, "top_p", 0.0, 1.0, 1.0)) or 1.0,
        seed=_int(body, "seed", -(2**63), 2**63 - 1),
        stop=_stop(body.get("stop")),
        stream=bool(body.get("stream")),
        include_usage=bool(isinstance(options, dict) and options.get("include_usage")),
        tools=tools,
        tool_choice=choice,
        scores=bool(ext.get("scores")),
    )


def render(tokenizer: Any, params: ChatParams) -> str:
    """The prompt text: tools through the model's own chat template when it renders them (the
    text changes when they are passed), else declared by :func:`with_tools`'s system text."""
    plain = render_chat(tokenizer, params.messages, add_generation_prompt=True)
    if not params.tool_names:
        return plain
    native = render_chat(tokenizer, params.messages, add_generation_prompt=True, tools=params.tools)
    if native != plain:
        return native
    return render_chat(tokenizer, with_tools(params), add_generation_prompt=True)


def with_tools(params: ChatParams) -> list[Message]:
    """The messages with the tool declaration merged into (or put before) the system one."""
    if not params.tool_names or params.tools is None:
        return params.messages
    preamble = tool_prompt(params.tools, params.tool_choice)
    first = params.messages[0]
    if first["role"] == "system":
        return [
            {"role": "system", "content": f"{first['content']}\n\n{preamble}"},
            *params.messages[1:],
        ]
    return [{"role": "system", "content": preamble}, *params.messages]


__all__ = [
    "ChatParams",
    "RequestError",
    "normalize_messages",
    "parse_body",
    "render",
    "with_tools",
]
