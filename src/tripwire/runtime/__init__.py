"""Watch in production: ingest agent traces, score them with layered monitors that may themselves
be compromised (honeypots demote them), detect behaviour shift, spend a human audit budget, and
keep every event in a real database (SQLite by default, PostgreSQL when configured).

The room, from the outside in::

    app.create_app       the FastAPI service: api/ routers (ingest, chat, read, monitors, audit,
                         dashboard), their dependencies and pydantic bodies
    watch.run_watch      the same pipeline in-process over a trace file (``tripwire watch``)
    service.Service      the writer thread: scores, commits in groups, persists monitor and
                         drift state; queries.* is every SQL statement, store.* the schema
    pipeline.Pipeline    one tenant's monitors -> aggregate -> audit budget, honeypots, drift
    monitors/            rules (YAML policy), LLM (sanitised view), white-box probe
    events, alerts       the values that flow: Event in, Verdict out, Alert raised
    errors               the exceptions, each with the HTTP status the API answers

This package imports only the light value types; the service (FastAPI, SQLAlchemy) is imported
from :mod:`tripwire.runtime.app` when it is wanted.
"""

from tripwire.runtime.aggregate import Calibrator, Thresholds, aggregate
from tripwire.runtime.alerts import Alert
from tripwire.runtime.errors import (
    ApiError,
    StoreUnavailable,
    TraceError,
    UnsupportedMediaType,
    UpstreamError,
)
from tripwire.runtime.events import Event, EventIn, MonitorResult, Verdict
from tripwire.runtime.monitors.base import Monitor
from tripwire.runtime.pipeline import Pipeline, RuntimeConfig, calibrate_on_honest

__all__ = [
    "Alert",
    "ApiError",
    "Calibrator",
    "Event",
    "EventIn",
    "Monitor",
    "MonitorResult",
    "Pipeline",
    "RuntimeConfig",
    "StoreUnavailable",
    "Thresholds",
    "TraceError",
    "UnsupportedMediaType",
    "UpstreamError",
    "Verdict",
    "aggregate",
    "calibrate_on_honest",
]
