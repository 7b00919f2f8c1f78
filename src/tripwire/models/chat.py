"""Chat formatting: render messages with the model's template and locate the response span."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

Message = dict[str, str]

_FALLBACK_ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}


@dataclass(frozen=True)
class Rendered:
    """A rendered prompt: the text and, if the last message is the assistant's, its char span."""

    text: str
    span: tuple[int, int] | None = None


def _fallback(messages: list[Message], add_generation_prompt: bool) -> str:
    parts = [f"{_FALLBACK_ROLES.get(m['role'], m['role'])}: {m['content']}\n" for m in messages]
    if add_generation_prompt:
        parts.append("Assistant:")
    return "".join(parts)


def render_chat(
    tokenizer: Any,
    messages: list[Message],
    add_generation_prompt: bool = True,
    tools: list[dict[str, Any]] | None = None,
) -> str:
    """Render ``messages`` with the tokenizer's chat template (plain fallback without one);
    ``tools`` (OpenAI function declarations) go to the template, which may ignore them."""
    for m in messages:
        if set(m) - {"role", "content"} or "role" not in m or "content" not in m:
            raise ValueError(f"a chat message needs exactly 'role' and 'content', got {sorted(m)}")
    if getattr(tokenizer, "chat_template", None):
        extra = {"tools": tools} if tools else {}
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt, **extra
        )
        return str(text)
    return _fallback(messages, add_generation_prompt)


def render_with_response(tokenizer: Any, messages: list[Message]) -> Rendered:
    """Render a conversation whose last message is the assistant's, returning its char span.

    The span covers the assistant's content only (not the template's role markers), so a
    capture at ``positions="response"`` reads exactly the response tokens.
    """
    if not messages or messages[-1]["role"] != "assistant":
        raise ValueError("render_with_response needs a conversation ending in an assistant message")
    prefix = render_chat(tokenizer, messages[:-1], add_generation_prompt=True)
    full = render_chat(tokenizer, messages, add_generation_prompt=False)
    content = messages[-1]["content"]
    start = full.find(content, len(prefix) - 1 if prefix else 0)
    if start < 0:
        start = full.rfind(content)
    if start < 0:
        raise ValueError("the chat template altered the assistant message; cannot locate it")
    return Rendered(full, (start, start + len(content)))


def render_prompt(tokenizer: Any, prompt: str, system: str | None = None) -> Rendered:
    """Render a single user prompt, ready for generation; the span covers the user's text."""
    messages: list[Message] = []
    if system is not None:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": prompt})
    text = render_chat(tokenizer, messages, add_generation_prompt=True)
    start = text.rfind(prompt)
    return Rendered(text, (start, start + len(prompt)) if start >= 0 else None)


__all__ = ["Message", "Rendered", "render_chat", "render_prompt", "render_with_response"]
