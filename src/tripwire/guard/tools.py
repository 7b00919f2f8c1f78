"""Tool calls for a local model that has no native tool-call channel: how they are asked for in
the prompt and how they are read back from the model's text.

**Prompt.** When a request carries ``tools`` (and ``tool_choice`` is not ``"none"``) and the
model's chat template renders them (SmolLM2, Qwen and Llama 3 templates do), the template's own
format is used. Otherwise a system message is put first (or merged into the request's first
system message) listing each function's name, description and JSON-schema parameters, and
asking for a reply that is *only* ``{"name": "<function>", "arguments": {...}}`` - or a JSON
list of such objects for several calls. ``tool_choice: "required"`` or a named function adds
"you must call ..." to it; nothing forces the model's tokens (no constrained decoding).

**Parsing.** A finished choice is a tool call when its whole text, stripped, after removing one
optional ```` ```json ```` fence or ``<tool_call>...</tool_call>`` wrappers (Hermes/Qwen style),
parses as JSON: an object ``{"name", "arguments" | "parameters"}`` (also nested as
``{"function": {...}}``), or a list of them, each naming a declared function. ``arguments`` may
be an object or a JSON string; it is sent as a JSON string, as OpenAI does. Anything else is
ordinary content. While streaming, text that could still turn out to be a call (it starts with
``{``, ``[``, a fence or ``<tool_call>``) is held back until the choice ends.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from tripwire.errors import UsageError

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)
_WRAPPED = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)
_OPENERS = ("{", "[", "```", "<tool_call>")


def function_names(tools: list[dict[str, Any]]) -> list[str]:
    """The declared function names; a malformed tool is a one-line usage error."""
    names = []
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(t, dict) or t.get("type", "function") != "function" or not fn:
            raise UsageError(f"tools[{i}] must be {{'type': 'function', 'function': {{...}}}}")
        name = fn.get("name") if isinstance(fn, dict) else None
        if not isinstance(name, str) or not name:
            raise UsageError(f"tools[{i}].function.name must be a non-empty string")
        names.append(name)
    return names


def tool_prompt(tools: list[dict[str, Any]], tool_choice: Any) -> str:
    """The system text that declares the tools and the reply format (see the module doc)."""
    specs = [
        {
            "name": t["function"]["name"],
            "description": t["function"].get("description", ""),
            "parameters": t["function"].get("parameters", {}),
        }
        for t in tools
    ]
    lines = [
        "You can call these functions:",
        json.dumps(specs, ensure_ascii=False),
        'To call a function, reply with only a JSON object {"name": <function name>, '
        '"arguments": <object>} (a JSON list of such objects for several calls). '
        "Otherwise answer normally.",
    ]
    if tool_choice == "required":
        lines.append("You must call one of the functions.")
    elif isinstance(tool_choice, dict):
        lines.append(f"You must call the function {tool_choice['function']['name']}.")
    return "\n".join(lines)


def could_be_call(text: str) -> bool:
    """Whether streamed text so far may still become a tool call (so it is held back)."""
    head = text.lstrip()
    return not head or any(head.startswith(o) or o.startswith(head) for o in _OPENERS)


def _unwrap(text: str) -> list[str]:
    text = text.strip()
    wrapped = _WRAPPED.findall(text)
    if wrapped and not _WRAPPED.sub("", text).strip():
        return list(wrapped)
    fence = _FENCE.match(text)
    return [fence.group(1) if fence else text]


def _call(obj: Any, names: list[str]) -> dict[str, Any] | None:
    if isinstance(obj, dict) and isinstance(obj.get("function"), dict):
        obj = obj["function"]
    if not isinstance(obj, dict) or obj.get("name") not in names:
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except ValueError:
            return None
    if not isinstance(args, dict):
        return None
    return {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": obj["name"], "arguments": json.dumps(args, ensure_ascii=False)},
    }


def parse_tool_calls(text: str, names: list[str]) -> list[dict[str, Any]] | None:
    """The OpenAI ``tool_calls`` a choice's text holds, or ``None`` if it is plain content."""
    calls: list[dict[str, Any]] = []
    for part in _unwrap(text):
        try:
            obj = json.loads(part)
        except ValueError:
            return None
        for item in obj if isinstance(obj, list) else [obj]:
            call = _call(item, names)
            if call is None:
                return None
            calls.append(call)
    return calls or None


__all__ = ["could_be_call", "function_names", "parse_tool_calls", "tool_prompt"]
