"""OpenAI-compatible proxy: ``POST /v1/chat/completions`` is forwarded to an upstream model, and the
model's answer (text and tool calls) is stored and scored before the client sees it.

A ``block`` or ``defer`` verdict replaces the answer: the text becomes a notice, tool calls are
dropped, ``finish_reason`` is ``content_filter``, and the ``x-tripwire-action`` header says which.
Streaming requests are answered as a stream too, but the upstream stream is buffered and checked
whole before the first chunk is released: a tool call cannot be half-sent and then retracted.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx

from tripwire.runtime.errors import UpstreamError
from tripwire.runtime.events import ACTIONS, Event

Commit = Callable[[list[Event]], Awaitable[list[dict[str, Any]]]]
MAX_STREAM_BYTES = 8_000_000


def _args(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        return {"raw": str(raw)[:64_000]}
    return parsed if isinstance(parsed, dict) else {"raw": parsed}


def answer_events(
    message: dict[str, Any], agent: str, model: str | None, session: str | None
) -> list[Event]:
    """A chat answer as events: its text as a message, each tool call as a tool_call."""
    out = []
    content = message.get("content")
    if isinstance(content, str) and content:
        out.append(Event(agent, "message", content[:64_000], None, None, session, model, "proxy"))
    for tc in message.get("tool_calls") or []:
        fn = (tc or {}).get("function") or {}
        name = str(fn.get("name") or "unknown_tool")[:200]
        out.append(
            Event(
                agent, "tool_call", None, name, _args(fn.get("arguments")), session, model, "proxy"
            )
        )
    return out


def _strictest(results: list[dict[str, Any]]) -> str:
    acts = [r["action"] for r in results] or ["allow"]
    return max(acts, key=ACTIONS.index)


def _notice(action: str, results: list[dict[str, Any]]) -> str:
    reasons = sorted({x for r in results for m in r["monitors"] for x in m["reasons"]})
    what = "blocked" if action == "block" else "held for human review"
    return f"[tripwire: this answer was {what} ({', '.join(reasons) or 'monitor score'})]"


def _sse_chunks(raw: bytes) -> Iterator[dict[str, Any]]:
    for line in raw.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            continue
        if isinstance(chunk, dict):
            yield chunk


def assemble_stream(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The assistant message a stream of chat-completion chunks adds up to."""
    content: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    for ch in chunks:
        for choice in ch.get("choices") or []:
            if choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                content.append(delta["content"])
            for tc in delta.get("tool_calls") or []:
                slot = calls.setdefault(
                    int(tc.get("index", 0)), {"function": {"name": "", "arguments": ""}}
                )
                fn = tc.get("function") or {}
                slot["function"]["name"] += fn.get("name") or ""
                slot["function"]["arguments"] += fn.get("arguments") or ""
    return {
        "role": "assistant",
        "content": "".join(content),
        "tool_calls": [calls[i] for i in sorted(calls)],
    }


async def forward(
    body: dict[str, Any],
    upstream: str,
    upstream_key: str | None,
    agent: str,
    session: str | None,
    commit: Commit,
) -> tuple[bytes, str, str]:
    """Forward one request; return (body, media type, action) for the client.

    Raises :class:`UpstreamError` (502) when the upstream fails or answers nonsense.
    """
    headers = {"Authorization": f"Bearer {upstream_key}"} if upstream_key else {}
    stream = bool(body.get("stream"))
    model = str(body.get("model") or "") or None
    try:
        async with httpx.AsyncClient(
            base_url=upstream.rstrip("/"), headers=headers, timeout=120
        ) as client:
            r = await client.post("/chat/completions", json=body)
    except httpx.HTTPError as exc:
        raise UpstreamError(f"upstream model unreachable ({type(exc).__name__})") from exc
    if r.status_code >= 400:
        raise UpstreamError(f"upstream model answered HTTP {r.status_code}")
    if len(r.content) > MAX_STREAM_BYTES:
        raise UpstreamError("upstream answer too large")
    if not stream:
        try:
            data = r.json()
            message = data["choices"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise UpstreamError("upstream answer is not a chat completion") from exc
        results = await commit(answer_events(message, agent, model, session))
        action = _strictest(results)
        if action in ("block", "defer"):
            data["choices"][0]["message"] = {
                "role": "assistant",
                "content": _notice(action, results),
            }
            data["choices"][0]["finish_reason"] = "content_filter"
        data["tripwire"] = {"action": action, "event_ids": [x["id"] for x in results]}
        return json.dumps(data).encode(), "application/json", action
    chunks = list(_sse_chunks(r.content))
    message = assemble_stream(chunks)
    results = await commit(answer_events(message, agent, model, session))
    action = _strictest(results)
    if action in ("block", "defer"):
        base = {k: chunks[0].get(k) for k in ("id", "object", "created", "model")} if chunks else {}
        chunks = [
            {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": _notice(action, results)},
                        "finish_reason": "content_filter",
                    }
                ],
            }
        ]
    out = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return out.encode(), "text/event-stream", action


__all__ = ["answer_events", "assemble_stream", "forward"]
