"""OpenAI-compatible proxy: ``POST /v1/chat/completions`` is forwarded to an upstream model, and the
model's answer (every choice's text and tool calls, in every shape: see
:mod:`tripwire.runtime.proxy_answer`) is stored and scored before the client sees it.

A ``block`` or ``defer`` verdict on any choice replaces the whole answer: each choice's text
becomes a notice, tool calls and logprobs are dropped, ``finish_reason`` is ``content_filter``, and
the ``x-tripwire-action`` header says which. A part that cannot be scored blocks the answer too,
and the notice names it (``unscorable:...``).
Streaming requests are answered as a stream too, but the upstream stream is buffered and checked
whole before the first chunk is released: a tool call cannot be half-sent and then retracted.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tripwire.runtime import jsonsafe
from tripwire.runtime.errors import UpstreamError
from tripwire.runtime.events import ACTIONS, Event
from tripwire.runtime.proxy_answer import Reading, assemble_stream, malformed

Commit = Callable[[list[Event]], Awaitable[list[dict[str, Any]]]]
MAX_STREAM_BYTES = 8_000_000


def answer_events(
    messages: dict[int, Any], agent: str, model: str | None, session: str | None
) -> Reading:
    """Each choice's message (by index) as events, and what of them could not be scored."""
    reading = Reading(agent, model, session)
    for i, msg in messages.items():
        reading.message(msg, f"choices[{i}].message")
    return reading


def _strictest(results: list[dict[str, Any]], refused: list[str]) -> str:
    acts = [r["action"] for r in results] or ["allow"]
    return "block" if refused else max(acts, key=ACTIONS.index)


def _notice(action: str, results: list[dict[str, Any]], refused: list[str]) -> str:
    reasons = sorted({x for r in results for m in r["monitors"] for x in m["reasons"]})
    reasons += refused
    what = "blocked" if action == "block" else "held for human review"
    return f"[tripwire: this answer was {what} ({', '.join(reasons) or 'monitor score'})]"


def _sse_chunks(raw: bytes) -> list[Any]:
    out = []
    for line in raw.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        try:
            chunk = jsonsafe.loads(data, what="upstream stream chunk")
        except jsonsafe.JsonError as exc:
            raise UpstreamError(str(exc)) from exc
        out.append(_storable(chunk, "upstream stream chunk"))
    if not out:
        raise UpstreamError("upstream answer is not a chat completion stream (no data chunks)")
    return out


def _storable(data: Any, what: str) -> Any:
    """``data`` when every value in it can be stored (no NUL, finite numbers), else a 502: the
    answer would be scored, and its events stored, on both databases alike."""
    if why := jsonsafe.value_problem(data, what):
        raise UpstreamError(why)
    return data


def _choices(data: Any) -> list[dict[str, Any]]:
    if not isinstance(data, dict):
        raise malformed("the answer", f"is {type(data).__name__}, not an object")
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        raise malformed("choices", "is not a non-empty list")
    for i, c in enumerate(choices):
        if not isinstance(c, dict):
            raise malformed(f"choices[{i}]", f"is {type(c).__name__}, not a choice")
    return choices


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
            data = _storable(jsonsafe.loads(r.content, what="upstream answer"), "upstream answer")
        except jsonsafe.JsonError as exc:
            raise UpstreamError(str(exc)) from exc
        choices = _choices(data)
        messages = {i: c.get("message") for i, c in enumerate(choices)}
        reading = answer_events(messages, agent, model, session)
        results = await commit(reading.events)
        action = _strictest(results, reading.refused)
        if action in ("block", "defer"):
            notice = _notice(action, results, reading.refused)
            for c in choices:
                c["message"] = {"role": "assistant", "content": notice}
                c["finish_reason"] = "content_filter"
                if "logprobs" in c:
                    c["logprobs"] = None
        data["tripwire"] = {"action": action, "event_ids": [x["id"] for x in results]}
        if reading.refused:
            data["tripwire"]["refused"] = reading.refused
        return json.dumps(data).encode(), "application/json", action
    chunks = _sse_chunks(r.content)
    assembled = assemble_stream(chunks)
    reading = answer_events(assembled, agent, model, session)
    results = await commit(reading.events)
    action = _strictest(results, reading.refused)
    if action in ("block", "defer"):
        first = chunks[0] if isinstance(chunks[0], dict) else {}
        base = {k: first.get(k) for k in ("id", "object", "created", "model")}
        notice = _notice(action, results, reading.refused)
        chunks = [
            {
                **base,
                "choices": [
                    {
                        "index": i,
                        "delta": {"role": "assistant", "content": notice},
                        "finish_reason": "content_filter",
                    }
                    for i in (sorted(assembled) or [0])
                ],
            }
        ]
    out = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return out.encode(), "text/event-stream", action


__all__ = ["answer_events", "assemble_stream", "forward"]
