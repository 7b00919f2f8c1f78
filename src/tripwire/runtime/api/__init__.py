"""The HTTP API as FastAPI routers, one module per concern; :func:`tripwire.runtime.app.create_app`
mounts them in :data:`ROUTERS` order.

==============  ============================================================================
``ingest``      ``POST /v1/events``, ``POST /v1/traces`` (OTLP/HTTP)
``chat``        ``POST /v1/chat/completions`` (OpenAI-compatible proxy)
``read``        ``GET /v1/events``, ``/v1/alerts``, ``/v1/drift``, ``/v1/stats``, ``/healthz``
``monitors``    ``GET /v1/monitors``, ``POST /v1/monitors/{name}/fingerprint``
``audit``       ``GET /v1/audit``, ``POST /v1/audit/{id}``
``dashboard``   ``GET /``, ``POST /login`` (HTML, not in the OpenAPI schema)
==============  ============================================================================

Shared state comes from ``app.state`` through :mod:`~tripwire.runtime.api.deps`; bodies are the
pydantic models of :mod:`~tripwire.runtime.api.schemas`; SQL is in :mod:`tripwire.runtime.queries`.
"""

from fastapi import APIRouter

from tripwire.runtime.api import audit, chat, dashboard, ingest, monitors, read

ROUTERS: tuple[APIRouter, ...] = (
    read.health_router,
    ingest.router,
    chat.router,
    read.router,
    monitors.router,
    audit.router,
    dashboard.router,
)

__all__ = ["ROUTERS"]
