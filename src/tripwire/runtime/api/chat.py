"""The OpenAI-compatible proxy route (``serve --upstream URL``); the forwarding itself, and what
is done to a blocked answer, is :mod:`tripwire.runtime.proxy`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import Response

from tripwire.runtime import jsonsafe
from tripwire.runtime.api.deps import ConfigDep, ServiceDep, Tenant
from tripwire.runtime.api.schemas import ErrorBody
from tripwire.runtime.events import Event
from tripwire.runtime.proxy import forward

router = APIRouter(
    tags=["proxy"],
    responses={
        400: {"model": ErrorBody},
        401: {"model": ErrorBody},
        404: {"model": ErrorBody},
        502: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
)


@router.post("/v1/chat/completions")
async def chat_completions(
    request: Request, tid: Tenant, cfg: ConfigDep, service: ServiceDep
) -> Response:
    """OpenAI-compatible proxy (``serve --upstream URL``): forwards to the upstream model,
    stores and scores its answer, and blocks or defers it before the client sees it.
    ``X-Tripwire-Agent`` names the agent (default: the body's ``user``, else ``proxy``)."""
    if cfg.upstream is None:
        raise HTTPException(404, "proxy mode is off: start the service with --upstream URL")
    try:
        body = jsonsafe.loads(await request.body())
    except jsonsafe.JsonError as exc:
        raise HTTPException(400, str(exc)) from exc
    if why := jsonsafe.value_problem(body, "body"):
        raise HTTPException(400, why)
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        raise HTTPException(400, "body must be a chat completion request with 'messages'")
    agent = request.headers.get("x-tripwire-agent") or str(body.get("user") or "proxy")
    session = request.headers.get("x-tripwire-session")

    async def commit(evs: list[Event]) -> list[dict[str, Any]]:
        return await service.commit(tid, evs) if evs else []

    out, media, action = await forward(
        body, cfg.upstream, cfg.upstream_key, agent[:200], session, commit
    )
    return Response(out, media_type=media, headers={"x-tripwire-action": action})


__all__ = ["router"]
