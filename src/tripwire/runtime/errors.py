"""The runtime's exceptions, all in one place, each carrying the HTTP status the API answers with.

::

    tripwire.errors.TripwireError
    ├── UsageError ── DataError
    │                 └── TraceError (+ ApiError)   an OTLP body that cannot be decoded     400
    │                     └── UnsupportedMediaType  neither JSON nor protobuf               415
    └── ApiError                                    answered as ``{"error": message}``      500
        ├── KeyRefused                              the request's key was revoked (or its
        │                                           tenant deleted) before the commit       401
        ├── StoreRejected                           events the store refuses as sent        422
        ├── StoreUnavailable                        the database did not commit (in time)   503
        └── UpstreamError                           the proxied model or a monitor's
                                                    endpoint failed or answered nonsense    502

Code below the HTTP layer (the OTLP parser, the proxy, the writer) raises these; the app has one
handler for :class:`ApiError` that answers ``status_code`` with the one-line message, so no route
decides a status by reading a message. ``TraceError`` stays a :class:`~tripwire.errors.DataError`:
``tripwire watch`` reading a bad OTLP file exits 2 like any other malformed file.
"""

from __future__ import annotations

from tripwire.errors import DataError, TripwireError


class ApiError(TripwireError):
    """An error the HTTP API answers with ``status_code`` and ``{"error": <message>}``."""

    status_code: int = 500


class TraceError(DataError, ApiError):
    """An OTLP trace export that is not a decodable ``ExportTraceServiceRequest``."""

    status_code = 400


class UnsupportedMediaType(TraceError):
    """An OTLP body that is neither ``application/json`` nor ``application/x-protobuf``."""

    status_code = 415


class KeyRefused(ApiError):
    """The writer found the request's API key revoked, or its tenant deleted, inside the commit's
    transaction: nothing of the request was stored."""

    status_code = 401


class StoreRejected(ApiError):
    """Events the store refuses as sent (a value the database cannot hold, an idempotency key
    already used for a different event): retrying the same request fails the same way."""

    status_code = 422


class StoreUnavailable(ApiError):
    """The writer did not commit (database down, full, or too slow); nothing was acknowledged.
    A commit that took too long may still land: the message says so, and that a retry with the
    same idempotency keys is safe."""

    status_code = 503


class UpstreamError(ApiError):
    """The upstream model (proxy mode) or an LLM monitor's endpoint failed."""

    status_code = 502


__all__ = [
    "ApiError",
    "KeyRefused",
    "StoreRejected",
    "StoreUnavailable",
    "TraceError",
    "UnsupportedMediaType",
    "UpstreamError",
]
