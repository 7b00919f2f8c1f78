"""The FastAPI application, assembled by :func:`create_app`: state, middleware, error handlers,
the writer's lifespan and the routers of :mod:`tripwire.runtime.api`.

Every error answers ``{"error": "<one line>"}``: request validation 422 (the first few problems,
for the shape the client meant), :class:`HTTPException` its status, and the runtime's typed
exceptions (:class:`~tripwire.runtime.errors.ApiError`) the ``status_code`` their class carries.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from tripwire.runtime.api import ROUTERS
from tripwire.runtime.api.fastpath import FastIngest
from tripwire.runtime.api.limits import BODY_TIMEOUT_S, BodyLimit
from tripwire.runtime.api.schemas import EVENTS_DEFS, evaluation_attributes
from tripwire.runtime.api.urlguard import NoNulInUrl
from tripwire.runtime.errors import ApiError
from tripwire.runtime.keys import Keys
from tripwire.runtime.pipeline import RuntimeConfig
from tripwire.runtime.service import Service


def _one_line(exc: RequestValidationError) -> str:
    """The first few validation errors as one line. For the event-or-batch body, only the errors
    of the shape the client meant (a body with ``events`` is a batch) are shown."""
    errs = list(exc.errors())
    body = getattr(exc, "body", None)
    if len(errs) > 1 and isinstance(body, dict):
        want = "EventBatch" if "events" in body else "EventIn"
        mine = [e for e in errs if any(want in str(x) for x in e.get("loc", ())[:2])]
        errs = mine or errs
    if any(e.get("type") == "json_invalid" for e in errs):
        return "body is not valid JSON"
    if body is not None and not isinstance(body, dict) and "Event" in str(errs[0].get("loc", "")):
        return 'body must be a JSON object: one event, or {"events": [...]}'
    parts: list[str] = []
    for e in errs[:3]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body" and "Event" not in str(x))
        msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        part = f"{loc}: {msg}" if loc else msg
        if part not in parts:
            parts.append(part)
    return "; ".join(parts) or "invalid request"


async def _validation_error(_req: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"error": _one_line(exc)}, status_code=422)


async def _http_error(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse(
        {"error": str(exc.detail)},
        status_code=exc.status_code,
        headers=getattr(exc, "headers", None),
    )


async def _api_error(_req: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=exc.status_code)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.service = Service(app.state.engine, app.state.config)
    try:
        yield
    finally:
        app.state.service.stop()


def create_app(
    engine: Engine,
    config: RuntimeConfig | None = None,
    body_timeout: float = BODY_TIMEOUT_S,
    fast_ingest: bool = True,
) -> FastAPI:
    """The service on ``engine`` (already migrated). The writer thread starts with the app;
    a request body must arrive within ``body_timeout`` seconds (408 otherwise).
    ``fast_ingest``: ordinary ``POST /v1/events`` requests are answered by
    :class:`~tripwire.runtime.api.fastpath.FastIngest` (the same answers as the route, which
    the tests check by turning it off)."""
    app = FastAPI(
        title="tripwire runtime",
        version="0.1.0",
        description="Ingest agent traces, score them with layered monitors that may be "
        "compromised, watch for behaviour shift, spend a human audit budget.",
        lifespan=_lifespan,
    )
    app.state.engine = engine
    app.state.config = config or RuntimeConfig()
    app.state.keys = Keys(engine)
    if fast_ingest:
        app.add_middleware(FastIngest)  # innermost: inside the body and URL limits
    app.add_middleware(BodyLimit, timeout=body_timeout)
    app.add_middleware(NoNulInUrl)
    app.exception_handler(RequestValidationError)(_validation_error)
    app.exception_handler(StarletteHTTPException)(_http_error)
    app.exception_handler(ApiError)(_api_error)
    for router in ROUTERS:
        app.include_router(router)

    base_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        # The event-or-batch body is declared by hand (it is parsed from bytes, not by FastAPI);
        # its models' definitions join the generated components.
        if app.openapi_schema is None:
            schema = base_openapi()
            schema.setdefault("components", {}).setdefault("schemas", {}).update(EVENTS_DEFS)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


__all__ = ["create_app", "evaluation_attributes"]
