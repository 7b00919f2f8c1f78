"""``tripwire watch``: the service's monitors in-process, with no server and a local SQLite file,
for a model on an edge device; and :func:`summarise_trace` for ``tripwire audit``'s runtime section.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tripwire.errors import DataError, UsageError
from tripwire.runtime import queries, store
from tripwire.runtime.events import Event, EventIn
from tripwire.runtime.pipeline import RuntimeConfig

BATCH = 500


def read_trace(path: Path) -> list[Event]:
    """Events from a JSONL file of native events, or OTLP JSON (one request, or one per line, as
    the OpenTelemetry collector's file exporter writes). ``-`` reads standard input."""
    from tripwire.runtime.ingest_otlp import parse_request

    if str(path) == "-":
        text = sys.stdin.read()
    else:
        if not path.is_file():
            raise UsageError(f"trace file {path} does not exist")
        text = path.read_text(encoding="utf-8", errors="replace")
    stripped = text.strip()
    if not stripped:
        raise DataError(f"trace file {path} is empty")
    try:
        whole = json.loads(stripped)
    except ValueError:
        whole = None
    if isinstance(whole, dict) and "resourceSpans" in whole:
        return parse_request(stripped.encode(), "application/json")
    if isinstance(whole, list):
        lines = [json.dumps(x) for x in whole]
    else:
        lines = [ln for ln in stripped.splitlines() if ln.strip()]
    out: list[Event] = []
    for n, line in enumerate(lines, 1):
        try:
            raw = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{path}:{n}: not valid JSON") from exc
        if isinstance(raw, dict) and "resourceSpans" in raw:
            out.extend(parse_request(line.encode(), "application/json"))
            continue
        try:
            out.append(Event.from_in(EventIn.model_validate(raw), source="file"))
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(x) for x in err.get("loc", ()))
            raise DataError(f"{path}:{n}: {loc or 'event'}: {err.get('msg')}") from exc
    return out


def peak_rss_mib() -> float:
    """Peak resident memory of this process image, in MiB.

    Reads ``VmHWM`` (per address space, so it starts afresh at exec); ``ru_maxrss`` would also
    count the pages of a large parent that forked this process.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_watch(
    trace: Path,
    db: Path,
    policy: Path | None = None,
    config: RuntimeConfig | None = None,
    embeddings: bool = False,
) -> dict[str, Any]:
    """Score every event of ``trace`` with the runtime pipeline, storing into SQLite ``db``.

    The whole file is validated before anything is written.
    """
    from tripwire.runtime.service import Service

    evs = read_trace(trace)
    cfg = config or RuntimeConfig(policy=policy)
    t0 = time.perf_counter()
    engine = store.make_engine(str(db))
    store.migrate(engine)
    with engine.begin() as conn:
        tid = queries.ensure_tenant(conn, "local", datetime.now(UTC))
    # One process, and drift calibrated inline: a batch run has no latency to protect, and on an
    # edge device the footprint is a single process.
    svc = Service(engine, cfg, calibrate="inline")
    try:
        actions: Counter[str] = Counter()
        reasons: Counter[str] = Counter()
        for i in range(0, len(evs), BATCH):
            for r in svc.process_now(tid, evs[i : i + BATCH]):
                actions[r["action"]] += 1
                for m in r["monitors"]:
                    reasons.update(m["reasons"])
        pipe = svc.pipelines.get(tid)
        monitors = pipe.monitor_status() if pipe else []
    finally:
        svc.stop()
    with engine.connect() as conn:
        kinds = queries.alert_counts(conn, tid)
    engine.dispose()
    shifts: dict[str, list[dict[str, float]]] = {}
    if embeddings:
        from tripwire.runtime.embedding_shift import EmbeddingShift, load_encoder

        es = EmbeddingShift(load_encoder(), arl0=cfg.drift_arl0)
        by_agent: dict[str, list[str]] = {}
        for e in evs:
            if e.type == "message" and e.content:
                by_agent.setdefault(e.agent, []).append(e.content)
        shifts = {a: es.update(a, texts) for a, texts in by_agent.items()}
    elapsed = time.perf_counter() - t0
    return {
        "embedding_shift": shifts,
        "events": len(evs),
        "actions": dict(actions),
        "rules_matched": dict(reasons.most_common()),
        "alerts": kinds,
        "monitors": monitors,
        "seconds": round(elapsed, 3),
        "events_per_s": round(len(evs) / elapsed, 1) if elapsed > 0 else None,
        "peak_rss_mib": peak_rss_mib(),
        "db": str(db),
    }


def summarise_trace(trace: Path, workdir: Path) -> dict[str, Any]:
    """The runtime section of ``tripwire audit``: a recorded trace through the same monitors.

    Uses a fresh SQLite file under ``workdir`` so the audit never touches a live database.
    """
    db = workdir / "runtime-watch.db"
    if db.exists():
        db.unlink()
    return run_watch(trace, db)


def flagged_events(db: Path, n_events: int) -> list[dict[str, Any]]:
    """The events of the last ``watch`` run (its last ``n_events`` rows) that were not allowed,
    in trace order, each with its 1-based position in the trace."""
    engine = store.make_engine(str(db))
    try:
        with engine.connect() as conn:
            tid = queries.ensure_tenant(conn, "local", datetime.now(UTC))
            rows = queries.last_events(conn, tid, n_events)
    finally:
        engine.dispose()
    flagged = []
    for pos, r in enumerate(rows, 1 + n_events - len(rows)):
        if r.action == "allow":
            continue
        reasons = [x for v in r.verdicts or [] for x in v.get("reasons", [])]
        flagged.append(
            {
                "position": pos,
                "agent": r.agent,
                "event": r.type + (f" {r.tool}" if r.tool else ""),
                "action": r.action,
                "score": r.score,
                "reasons": list(dict.fromkeys(reasons)),
            }
        )
    return flagged


__all__ = ["flagged_events", "read_trace", "run_watch", "summarise_trace"]
