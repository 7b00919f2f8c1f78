"""Browser-facing safeguards of the dashboard: cookie attributes, same-origin and CSRF checks, and
the security headers every dashboard response carries.

Cookies are ``HttpOnly``, ``SameSite=Strict``, with a ``Max-Age``, and ``Secure`` whenever the
request came over https (directly, or through a TLS proxy whose ``X-Forwarded-Proto`` uvicorn
trusts: set ``FORWARDED_ALLOW_IPS`` to the proxy's address). Over plain http they are sent only to
a loopback host (``127.0.0.1``, ``localhost``, ``::1``), where nothing travels on a network;
signing in over plain http to any other host is refused. Secure cookies take the ``__Host-`` name
prefix, so no other host or path can plant them.

A state-changing form (``/login``, ``/logout``) must come from the dashboard's own origin (its
``Origin``, else its ``Referer``; neither is refused) and carry the CSRF token of the
double-submit cookie, compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from collections.abc import Mapping

from fastapi import Request, Response

CSRF_COOKIE = "tripwire_csrf"
SESSION_COOKIE = "tripwire_session"
LOOPBACK_NAMES = frozenset({"localhost", "localhost."})


def _host(request: Request) -> str:
    return request.headers.get("host", "").strip().lower()


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(host: str) -> bool:
    name = _hostname(host)
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def secure_transport(request: Request) -> bool | None:
    """True over https, False over plain http to a loopback host, None otherwise (refused)."""
    if request.url.scheme == "https":
        return True
    return False if is_loopback(_host(request)) else None


def cookie_name(base: str, secure: bool) -> str:
    return f"__Host-{base}" if secure else base


def read_cookie(request: Request, base: str) -> str:
    return request.cookies.get(cookie_name(base, secure_transport(request) is True), "")


def set_cookie(resp: Response, base: str, value: str, secure: bool, max_age: int) -> None:
    resp.set_cookie(
        cookie_name(base, secure),
        value,
        max_age=max_age,
        path="/",
        secure=secure,
        httponly=True,
        samesite="strict",
    )


def clear_cookie(resp: Response, base: str, secure: bool) -> None:
    resp.delete_cookie(
        cookie_name(base, secure), path="/", secure=secure, httponly=True, samesite="strict"
    )


def same_origin(request: Request) -> bool:
    """The request's ``Origin`` (else ``Referer``) names this server's own scheme and host."""
    own = f"{request.url.scheme}://{_host(request)}"
    origin = request.headers.get("origin")
    if origin is not None:
        return origin.strip().lower() == own
    referer = request.headers.get("referer", "").strip().lower()
    return referer == own or referer.startswith(own + "/")


def csrf_token(request: Request) -> str:
    """The request's CSRF cookie value, or a fresh one (the caller sets it on the response)."""
    return read_cookie(request, CSRF_COOKIE) or secrets.token_urlsafe(32)


def csrf_ok(request: Request, form: Mapping[str, list[str]]) -> bool:
    """Same origin, and the form's ``csrf`` field equals the CSRF cookie."""
    cookie = read_cookie(request, CSRF_COOKIE)
    sent = (form.get("csrf") or [""])[0]
    return same_origin(request) and bool(cookie) and hmac.compare_digest(cookie, sent)


def harden(resp: Response, nonce: str | None = None) -> Response:
    """The security headers of a dashboard response; ``nonce`` admits its inline stylesheet."""
    style = f"'nonce-{nonce}'" if nonce else "'none'"
    resp.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src {style}; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "same-origin"
    return resp


__all__ = [
    "CSRF_COOKIE",
    "SESSION_COOKIE",
    "clear_cookie",
    "cookie_name",
    "csrf_ok",
    "csrf_token",
    "harden",
    "is_loopback",
    "read_cookie",
    "same_origin",
    "secure_transport",
    "set_cookie",
]
