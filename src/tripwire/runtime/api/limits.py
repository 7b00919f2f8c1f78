"""Request-size and request-time limits as pure ASGI middleware, so they hold before FastAPI
reads any body.

A ``Content-Length`` over the limit is refused at once; a chunked body is counted while it is
read and refused the moment it crosses the limit, then replayed to the app when it fits. The
whole body must arrive within ``timeout`` seconds of the request's headers: a client that sends
headers and part of a body, then stalls, gets 408 and the connection is closed (uvicorn itself
waits for a body forever).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

MAX_BODY_BYTES = 1_048_576
BODY_TIMEOUT_S = 10.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """Pure ASGI middleware: a request body over ``limit`` bytes gets 413, whatever its framing;
    one not complete ``timeout`` seconds after the headers gets 408."""

    def __init__(
        self, app: ASGIApp, limit: int = MAX_BODY_BYTES, timeout: float = BODY_TIMEOUT_S
    ) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout

    async def _reject(self, send: Send, status: int = 413) -> None:
        if status == 408:
            body = b'{"error":"request body not received within %g s"}' % self.timeout
        else:
            body = b'{"error":"request body too large (limit %d bytes)"}' % self.limit
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        for k, v in scope.get("headers", []):
            if k == b"content-length":
                try:
                    if int(v) > self.limit:
                        await self._reject(send)
                        return
                except ValueError:
                    pass
        chunks: list[bytes] = []
        size = 0
        deadline = asyncio.get_running_loop().time() + self.timeout
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    msg = await receive()
            except TimeoutError:
                await self._reject(send, 408)
                return
            if msg["type"] != "http.request":
                await self.app(scope, receive, send)
                return
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._reject(send)
                return
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


__all__ = ["BODY_TIMEOUT_S", "MAX_BODY_BYTES", "BodyLimit"]
