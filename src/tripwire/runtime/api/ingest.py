"""Ingest routes: native events (one or a batch) and OTLP/HTTP trace exports.

Both answer only after the writer has committed the events; a failed or slow commit answers 503
(:class:`~tripwire.runtime.errors.StoreUnavailable`) and acknowledges nothing. Retries are safe
when events carry idempotency keys: an ``Idempotency-Key`` header (event ``i`` of the request gets
``KEY#i``), an event's own ``idempotency_key``, or, for OTLP, the span's trace and span ids. An
event already stored under its key is answered as it was the first time, not stored again.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError

from tripwire.runtime import jsonsafe
from tripwire.runtime.api.deps import IngestAuth, IngestKey, KeysDep, ServiceDep, refused
from tripwire.runtime.api.schemas import (
    EVENTS,
    EVENTS_SCHEMA,
    ErrorBody,
    EventBatch,
    EventsAccepted,
)
from tripwire.runtime.errors import KeyRefused
from tripwire.runtime.events import Event
from tripwire.runtime.ingest_otlp import parse_request, response_body
from tripwire.runtime.keys import Keys
from tripwire.runtime.service import Service

router = APIRouter(
    tags=["ingest"],
    responses={401: {"model": ErrorBody}, 422: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)

#: A valid ``Idempotency-Key`` header: 1-200 printable ASCII characters.
IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,200}")

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x20-\x7e]+$",
        description="Makes retries safe: a request whose events are stored under this key is "
        "answered from the store instead of storing them again",
    ),
]


def _invalid(raw: bytes, exc: ValidationError) -> Exception:
    """The 422 of a body that does not validate; parsing it again for the error's sake is
    bounded (a body nested too deeply gets its own one line)."""
    errs = exc.errors()
    if any("recursion limit" in str(e.get("msg", "")) for e in errs):
        return HTTPException(
            422, f"body nests deeper than {jsonsafe.MAX_DEPTH} levels: flatten the arguments"
        )
    try:
        body = jsonsafe.loads(raw, allow_inf_nan=True)
    except ValueError:
        body = None
    return RequestValidationError(errs, body=body)


def parse_events(raw: bytes, key: str | None) -> list[Event]:
    """The events of a ``POST /v1/events`` body (one event or ``{"events": [...]}``), event
    ``i`` keyed ``KEY#i`` by the request's ``Idempotency-Key``; a 422 error when it does not
    validate. Parsed straight from bytes by pydantic's JSON validator: this is the hot path."""
    try:
        payload = EVENTS.validate_json(raw)
    except ValidationError as exc:
        raise _invalid(raw, exc) from exc
    items = payload.events if isinstance(payload, EventBatch) else [payload]
    return [
        Event.from_in(e, key=None if key is None else f"{key}#{i}") for i, e in enumerate(items)
    ]


def accepted(out: list[dict[str, Any]]) -> bytes:
    """The 200 body: how many events, and each one's id and verdict."""
    return json.dumps({"accepted": len(out), "events": out}).encode()


async def commit_under(
    keys: Keys, service: Service, auth: IngestKey, evs: list[Event]
) -> list[dict[str, Any]]:
    """Commit under the request's key; a key the writer finds revoked leaves the cache (401)."""
    try:
        return await service.commit(auth.tenant, evs, key_id=auth.key_id)
    except KeyRefused:
        keys.forget(auth.key)
        raise refused() from None


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
async def post_events(
    request: Request,
    auth: IngestAuth,
    service: ServiceDep,
    keys: KeysDep,
    key: IdempotencyKey = None,
) -> Response:
    """Store and score one event, or a batch ``{"events": [...]}``. Answers 200 only after the
    events are committed; the answer carries each verdict (allow / flag / defer / block), so an
    agent harness can call this before executing a step. With an ``Idempotency-Key`` (or
    events' own ``idempotency_key``) a retry is answered from the store, never stored twice.

    The ordinary request (a cached live key, a body that validates) is answered by
    :class:`~tripwire.runtime.api.fastpath.FastIngest` before it reaches this route, with the
    same answer; this route answers the rest."""
    evs = parse_events(await request.body(), key)
    out = await commit_under(keys, service, auth, evs)
    return Response(accepted(out), media_type="application/json")


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
async def post_traces(request: Request, auth: IngestAuth, service: ServiceDep) -> Response:
    """OTLP/HTTP trace export (JSON or protobuf) with GenAI or OpenInference attributes."""
    ctype = request.headers.get("content-type", "application/json")
    # A body that does not decode raises TraceError (400), a content type that is neither
    # UnsupportedMediaType (415): the app's ApiError handler answers both.
    evs = parse_request(await request.body(), ctype)
    if evs:
        await commit_under(request.app.state.keys, service, auth, evs)
    body, media = response_body(ctype)
    return Response(body, media_type=media)


__all__ = ["IDEMPOTENCY_KEY", "accepted", "commit_under", "parse_events", "router"]
