"""A URL carrying a NUL character is refused (400) before any route sees it, as a web server
refuses a malformed request line: PostgreSQL cannot compare text holding NUL, so a query such as
``?agent=%00`` would otherwise fail inside the database, on any route that filters by text."""

from __future__ import annotations

from tripwire.runtime.api.limits import ASGIApp, Receive, Scope, Send

_BODY = b'{"error":"the URL contains a NUL character (%00): remove it"}'


class NoNulInUrl:
    """Pure ASGI middleware: 400 for a NUL in the path or the query string."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (
            "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"")
        ):
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 400, "headers": headers})
            await send({"type": "http.response.body", "body": _BODY})
            return
        await self.app(scope, receive, send)


__all__ = ["NoNulInUrl"]
