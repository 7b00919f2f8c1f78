"""Audit section: a recorded agent trace through the runtime monitors (``--trace FILE``).

The same pipeline as ``tripwire serve`` / ``tripwire watch`` (rules, honeypot guard, drift),
run in-process on a throwaway SQLite file, so an audit never touches a live database.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import ClassVar

from tripwire.audit._context import AuditContext
from tripwire.audit._html import table
from tripwire.audit._registry import SectionResult, section
from tripwire.errors import UsageError


@section
class RuntimeSection:
    name: ClassVar[str] = "runtime"
    title: ClassVar[str] = "Recorded trace through the runtime monitors"
    order: ClassVar[int] = 60
    default: ClassVar[bool] = False

    def run(self, ctx: AuditContext) -> SectionResult:
        trace = ctx.trace
        if trace is None:
            raise UsageError("the runtime section needs a recorded trace: pass --trace FILE")
        from tripwire.runtime.watch import summarise_trace

        ctx.progress(f"runtime: scoring {trace.name}")
        with tempfile.TemporaryDirectory(prefix="tripwire-watch-") as work:
            result = summarise_trace(trace, Path(work))
        result.pop("db", None)
        result["trace"] = str(trace)
        rows = [[k, v] for k, v in sorted(result["actions"].items())]
        rule_rows = [[k, v] for k, v in result["rules_matched"].items()]
        alert_rows = [[k, v] for k, v in sorted(result["alerts"].items())]
        html = (
            f"<p>{result['events']} events from <code>{trace.name}</code> scored by the "
            "runtime pipeline (deterministic rules from the default policy, honeypot guard, "
            "calibrated drift detectors) in "
            f"{result['seconds']} s.</p>"
            + table(["action", "events"], rows)
            + (table(["rule", "matches"], rule_rows) if rule_rows else "<p>No rule matched.</p>")
            + (table(["alert kind", "count"], alert_rows) if alert_rows else "<p>No alerts.</p>")
        )
        flagged = sum(v for k, v in result["actions"].items() if k != "allow")
        summary = (
            f"{result['events']} events: {flagged} flagged, deferred or blocked; "
            f"{sum(result['alerts'].values())} alerts"
        )
        return SectionResult(data=result, html=html, summary=summary)
