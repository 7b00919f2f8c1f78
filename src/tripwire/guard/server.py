"""The guard's OpenAI-compatible HTTP surface (FastAPI; the ``guard`` extra).

* ``POST /v1/chat/completions`` - non-streamed or SSE (``data: {...}`` lines, then
  ``data: [DONE]``); the ``x-tripwire-action`` header is the strictest action of the answer
  (streamed: the prefill gate's, decided before the first chunk; a mid-stream cut is in its
  last chunk). A blocked answer is still HTTP 200, as the runtime proxy's is.
* ``GET /v1/models`` - the one model served; ``GET /healthz`` - liveness and the detectors.

Bad input (invalid JSON, a malformed message, an unknown model, a prompt over the context or a
body over ``max_body_bytes``, unknown routes) is a 4xx in OpenAI's error shape
``{"error": {"message", "type", "param", "code"}}`` with a one-line message.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tripwire.guard.api import Guard, Prepared
from tripwire.guard.batching import Batcher, EngineFailure, Ticket
from tripwire.guard.chat import MAX_N, MAX_STOP, ROLES, RequestError

MAX_BODY_BYTES = 4_000_000
_TYPES = {401: "authentication_error", 404: "not_found_error", 413: "invalid_request_error"}


def error_response(
    status: int, message: str, param: str | None = None, code: str | None = None
) -> JSONResponse:
    kind = _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


async def _read_json(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestError(f"the body is {declared} bytes; the limit is {limit}", None, 413)
    raw = b""
    async for part in request.stream():
        raw += part
        if len(raw) > limit:
            raise RequestError(f"the body is over the limit of {limit} bytes", None, 413)
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"the body is not valid JSON ({exc})".splitlines()[0]) from None
    except RecursionError:
        raise RequestError("the body's JSON is nested too deeply to read") from None


async def _events(ticket: Ticket) -> AsyncIterator[Any]:
    while (event := await ticket.events.get()) is not None:
        if isinstance(event, EngineFailure):
            raise event
        yield event


def request_schema(guard: Guard) -> dict[str, Any]:
    """The JSON schema of the request body (the body is parsed from bytes, so it is declared):
    every field the guard reads, as :func:`~tripwire.guard.chat.parse_body` checks it."""
    text = {"type": "object", "required": ["type", "text"], "properties": {
        "type": {"enum": ["text"]}, "text": {"type": "string"}}}  # fmt: skip
    content = {"anyOf": [{"type": "string"}, {"type": "array", "items": text}]}
    function = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "description": {"type": "string"},
            "parameters": {"type": "object"},
        },
    }
    call = {
        "type": "object",
        "required": ["function"],
        "properties": {
            "id": {"type": "string"},
            "type": {"enum": ["function"]},
            "function": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "arguments": {"type": "string"}},
            },
        },
    }
    message = {
        "type": "object",
        "required": ["role", "content"],
        "properties": {
            "role": {"enum": list(ROLES)},
            "content": content,
            "name": {"type": "string"},
            "tool_calls": {"type": "array", "items": call},
            "tool_call_id": {"type": "string"},
        },
    }
    named = {"type": "object", "required": ["type", "function"], "properties": {
        "type": {"enum": ["function"]}, "function": {"type": "object", "required": ["name"],
        "properties": {"name": {"type": "string"}}}}}  # fmt: skip
    tokens = {"type": "integer", "minimum": 1}
    return {
        "type": "object",
        "required": ["messages"],
        "properties": {
            "model": {"enum": [guard.name]},
            "messages": {"type": "array", "items": message, "minItems": 1},
            "n": {"type": "integer", "minimum": 1, "maximum": MAX_N},
            "max_tokens": tokens,
            "max_completion_tokens": tokens,
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "top_p": {"type": "number", "minimum": 0, "maximum": 1},
            "seed": {"type": "integer", "minimum": -(2**63), "maximum": 2**63 - 1},
            "stop": {
                "anyOf": [
                    {"type": "string", "minLength": 1},
                    {
                        "type": "array",
                        "items": {"type": "string", "minLength": 1},
                        "maxItems": MAX_STOP,
                    },
                ]
            },
            "stream": {"type": "boolean"},
            "stream_options": {
                "type": "object",
                "properties": {"include_usage": {"type": "boolean"}},
            },
            "tools": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["type", "function"],
                    "properties": {"type": {"enum": ["function"]}, "function": function},
                },
            },
            "tool_choice": {"anyOf": [{"enum": ["none", "auto", "required"]}, named]},
            "tripwire": {"type": "object", "properties": {"scores": {"type": "boolean"}}},
        },
    }


def response_schemas() -> dict[int | str, dict[str, Any]]:
    """The chat completion route's answers, declared (schemathesis checks them)."""
    error = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string", "minLength": 1},
                    "type": {"type": "string"},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    }
    choice = {
        "type": "object",
        "required": ["index", "message", "finish_reason"],
        "properties": {
            "index": {"type": "integer", "minimum": 0},
            "message": {"type": "object", "required": ["role"]},
            "finish_reason": {"enum": ["stop", "length", "tool_calls", "content_filter"]},
        },
    }
    action = {"enum": ["allow", "flag", "block"]}
    completion = {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices", "usage", "tripwire"],
        "properties": {
            "object": {"enum": ["chat.completion"]},
            "choices": {"type": "array", "items": choice, "minItems": 1},
            "usage": {"type": "object", "required": ["prompt_tokens", "completion_tokens"]},
            "tripwire": {"type": "object", "required": ["action"], "properties": {
                "action": action}},
        },
    }  # fmt: skip
    header = {"x-tripwire-action": {"schema": action}}
    json_error = {"content": {"application/json": {"schema": error}}}
    return {
        200: {
            "description": "the answer (a blocked one too): JSON, or SSE when streamed",
            "headers": header,
            "content": {
                "application/json": {"schema": completion},
                # each server-sent event: `data: <a chunk as JSON>`, the last `data: [DONE]`
                "text/event-stream": {
                    "schema": {
                        "type": "object",
                        "required": ["data"],
                        "properties": {"data": {"type": "string"}},
                    }
                },
            },
        },
        **{
            code: {"description": why, **json_error}
            for code, why in [
                (400, "a malformed body, message or parameter; a prompt over the context"),
                (404, "an unknown model"),
                (413, "a body over --max-body-bytes"),
                (500, "the model failed while generating"),
            ]
        },
    }


def create_app(
    guard: Guard, window_ms: float = 5.0, max_batch: int = 8, max_body_bytes: int = MAX_BODY_BYTES
) -> FastAPI:
    """The FastAPI app serving ``guard`` (batching concurrent requests, see ``batching``)."""
    batcher = Batcher(guard, window_ms, max_batch)
    started = int(time.time())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        batcher.start()
        yield
        await batcher.stop()
        if guard.telemetry is not None:
            guard.telemetry.shutdown()  # exports the spans still queued

    app = FastAPI(title="tripwire guard", lifespan=lifespan)
    app.state.batcher = batcher

    @app.exception_handler(RequestError)
    async def _bad_request(request: Request, exc: RequestError) -> JSONResponse:
        return error_response(exc.status, str(exc), exc.param, exc.code)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        return error_response(exc.status_code, f"{request.url.path}: {detail}")

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(x) for x in first.get("loc", ()))
        return error_response(400, f"{where}: {first.get('msg', 'invalid request')}")

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        sizes = batcher.batches
        return {
            "status": "ok",
            "model": guard.name,
            "batches": {
                "run": len(sizes),
                "requests": sum(sizes),
                "largest": max(sizes, default=0),
            },
            "detectors": [
                {"name": d.name, "layers": d.layers, "calibrated": d.calibrated}
                for d in guard.detectors
            ],
        }

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        card = {"id": guard.name, "object": "model", "created": started, "owned_by": "tripwire"}
        return {"object": "list", "data": [card]}

    @app.post(
        "/v1/chat/completions",
        responses=response_schemas(),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": request_schema(guard)}},
            }
        },
    )
    async def chat_completions(request: Request) -> Response:
        prep = guard.prepare(await _read_json(request, max_body_bytes))
        ticket = batcher.submit(prep)
        if not prep.params.stream:
            try:
                async for event in _events(ticket):
                    prep.answer.add(event)
            except EngineFailure as exc:
                prep.answer.close("EngineFailure")
                return error_response(500, str(exc))
            finally:
                prep.request.cancelled.set()
                prep.answer.close("cancelled")  # a no-op once the answer finished
            body = prep.answer.completion()
            return JSONResponse(body, headers=prep.answer.headers())
        return await _stream(prep, ticket)

    return app


async def _stream(prep: Prepared, ticket: Ticket) -> Response:
    """Wait for the prefill verdict (it names the header), then stream the rest."""
    events = _events(ticket)
    try:
        gate = await anext(events)
    except EngineFailure as exc:
        prep.answer.close("EngineFailure")
        return error_response(500, str(exc))
    first = prep.answer.chunks(gate)

    async def body() -> AsyncIterator[bytes]:
        try:
            for chunk in first:
                yield f"data: {json.dumps(chunk)}\n\n".encode()
            async for event in events:
                for chunk in prep.answer.chunks(event):
                    yield f"data: {json.dumps(chunk)}\n\n".encode()
        except EngineFailure as exc:
            prep.answer.close("EngineFailure")
            error = {"error": {"message": str(exc), "type": "server_error"}}
            yield f"data: {json.dumps(error)}\n\n".encode()
        finally:
            prep.request.cancelled.set()  # a client that went away stops its rows
            prep.answer.close("cancelled")  # a no-op once the answer finished
        yield b"data: [DONE]\n\n"

    return StreamingResponse(
        body(), media_type="text/event-stream", headers=prep.answer.headers(streamed=True)
    )


__all__ = ["MAX_BODY_BYTES", "create_app", "error_response"]
