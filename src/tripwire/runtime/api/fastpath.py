"""``POST /v1/events``, the hot path, answered as pure ASGI in front of FastAPI's router.

Agents that post one event per step are the common case, and for a one-event request FastAPI's
routing, dependency solving and response plumbing cost more than the work (py-spy at 16
connections: about two thirds of the event loop's time). :class:`FastIngest` answers the ordinary
request itself, with the route's own functions and the route's answer: a key already in the key
cache (:meth:`~tripwire.runtime.keys.Keys.hit`), a valid ``Idempotency-Key`` or none, a body
that validates. Anything else (no key, a key not cached yet, a body or header that does not
validate) goes on to the FastAPI route with its body replayed, so every error, the key look-up
and the OpenAPI schema stay the route's (:mod:`tripwire.runtime.api.ingest`).

It sits inside the size, time and URL limits (:class:`~tripwire.runtime.api.limits.BodyLimit`,
:class:`~tripwire.runtime.api.urlguard.NoNulInUrl`), which hold for it as for every route.
"""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import HTTPException
from fastapi.responses import JSONResponse

from tripwire.runtime.api.deps import IngestKey
from tripwire.runtime.api.ingest import IDEMPOTENCY_KEY, accepted, commit_under, parse_events
from tripwire.runtime.api.limits import ASGIApp, Message, Receive, Scope, Send
from tripwire.runtime.errors import ApiError

PATH = "/v1/events"
_JSON = (b"content-type", b"application/json")


def _headers(scope: Scope) -> tuple[str | None, str | None, bool]:
    """The bearer key, the ``Idempotency-Key`` and whether both are usable as they are (the
    first of each header counts, as Starlette reads them)."""
    auth = idem = None
    for k, v in scope["headers"]:
        if k == b"authorization" and auth is None:
            auth = v.decode("latin-1")
        elif k == b"idempotency-key" and idem is None:
            idem = v.decode("latin-1")
    scheme, _, key = (auth or "").partition(" ")
    key = key.strip()
    ok = scheme.lower() == "bearer" and bool(key)
    if idem is not None and not IDEMPOTENCY_KEY.fullmatch(idem):
        ok = False
    return key or None, idem, ok


async def _body(receive: Receive) -> tuple[bytes, list[Message]] | None:
    """The whole body, and the messages it came in (to replay); None if the client left."""
    msgs: list[Message] = []
    while True:
        msg = await receive()
        msgs.append(msg)
        if msg["type"] != "http.request":
            return None
        if not msg.get("more_body", False):
            break
    return b"".join(m.get("body", b"") for m in msgs), msgs


class FastIngest:
    """Pure ASGI middleware: answers ordinary ``POST /v1/events`` requests without the router
    (see the module doc); everything else passes through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        key, idem, ok = _headers(scope)
        state = scope["app"].state
        found = state.keys.hit(key) if ok and key is not None else None
        if found is None:  # the route answers (and looks the key up, filling the cache)
            await self.app(scope, receive, send)
            return
        got = await _body(receive)
        if got is None:
            return
        raw, msgs = got
        try:
            evs = parse_events(raw, idem)
        except Exception:  # the route answers it, and names what is wrong
            await self.app(scope, _replay(msgs, receive), send)
            return
        assert key is not None
        try:
            out = await commit_under(state.keys, state.service, IngestKey(key, *found), evs)
        except HTTPException as exc:  # the key was refused inside the commit
            await _error(scope, receive, send, exc.status_code, str(exc.detail), exc.headers)
            return
        except ApiError as exc:
            await _error(scope, receive, send, exc.status_code, str(exc), None)
            return
        body = accepted(out)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(len(body)).encode()), _JSON],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _replay(msgs: list[Message], receive: Receive) -> Receive:
    pending = list(msgs)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


async def _error(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    message: str,
    headers: Mapping[str, str] | None,
) -> None:
    """The same ``{"error": ...}`` answer the app's handlers give."""
    await JSONResponse({"error": message}, status_code=status, headers=headers)(
        scope, receive, send
    )


__all__ = ["FastIngest"]
