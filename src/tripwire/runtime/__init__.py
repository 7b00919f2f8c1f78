"""Watch in production: ingest agent traces, score them with layered monitors that may themselves
be compromised (honeypots demote them), detect behaviour shift, spend a human audit budget, and
keep every event in a real database (SQLite by default, PostgreSQL when configured)."""

from tripwire.runtime.aggregate import Calibrator, Thresholds, aggregate
from tripwire.runtime.events import Event, EventIn, MonitorResult, Verdict
from tripwire.runtime.pipeline import Pipeline, RuntimeConfig

__all__ = [
    "Calibrator",
    "Event",
    "EventIn",
    "MonitorResult",
    "Pipeline",
    "RuntimeConfig",
    "Thresholds",
    "Verdict",
    "aggregate",
]
