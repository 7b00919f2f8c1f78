"""Ingest routes: native events (one or a batch) and OTLP/HTTP trace exports.

Both answer only after the writer has committed the events; a failed or slow commit answers 503
(:class:`~tripwire.runtime.errors.StoreUnavailable`) and acknowledges nothing.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError

from tripwire.runtime.api.deps import ServiceDep, Tenant
from tripwire.runtime.api.schemas import (
    EVENTS,
    EVENTS_SCHEMA,
    ErrorBody,
    EventBatch,
    EventsAccepted,
)
from tripwire.runtime.events import Event
from tripwire.runtime.ingest_otlp import parse_request, response_body

router = APIRouter(
    tags=["ingest"], responses={401: {"model": ErrorBody}, 503: {"model": ErrorBody}}
)


@router.post(
    "/v1/events",
    response_model=EventsAccepted,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": EVENTS_SCHEMA}},
        }
    },
)
async def post_events(request: Request, tid: Tenant, service: ServiceDep) -> Response:
    """Store and score one event, or a batch ``{"events": [...]}``. Answers 200 only after the
    events are committed; the answer carries each verdict (allow / flag / defer / block), so an
    agent harness can call this before executing a step."""
    # Parsed straight from bytes by pydantic's JSON validator: this is the hot path.
    raw = await request.body()
    try:
        payload = EVENTS.validate_json(raw)
    except ValidationError as exc:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        raise RequestValidationError(exc.errors(), body=body) from exc
    items = payload.events if isinstance(payload, EventBatch) else [payload]
    out = await service.commit(tid, [Event.from_in(e) for e in items])
    return Response(
        json.dumps({"accepted": len(out), "events": out}), media_type="application/json"
    )


@router.post(
    "/v1/traces",
    responses={400: {"model": ErrorBody}, 415: {"model": ErrorBody}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/x-protobuf": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    },
)
async def post_traces(request: Request, tid: Tenant, service: ServiceDep) -> Response:
    """OTLP/HTTP trace export (JSON or protobuf) with GenAI or OpenInference attributes."""
    ctype = request.headers.get("content-type", "application/json")
    # A body that does not decode raises TraceError (400), a content type that is neither
    # UnsupportedMediaType (415): the app's ApiError handler answers both.
    evs = parse_request(await request.body(), ctype)
    if evs:
        await service.commit(tid, evs)
    body, media = response_body(ctype)
    return Response(body, media_type=media)


__all__ = ["router"]
