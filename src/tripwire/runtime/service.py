"""The ingest path: one writer thread that scores events and commits them in groups.

Requests hand their events to :meth:`Service.submit` and wait on a future that resolves only after
the transaction holding those events has committed, so a 2xx always means "stored". Concurrent
requests are committed together (group commit), which is what lets SQLite take thousands of
events a second while every acknowledgement still waits for its commit. One thread owns all
monitor, honeypot and drift state, so none of it needs locks.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import queue
import threading
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine, event

from tripwire.runtime import queries, store
from tripwire.runtime.alerts import Alert
from tripwire.runtime.drift import AgentDrift, Alarm, features
from tripwire.runtime.errors import StoreUnavailable
from tripwire.runtime.events import Event
from tripwire.runtime.lifeline import die_with_parent
from tripwire.runtime.pipeline import Pipeline, Processed, RuntimeConfig

log = logging.getLogger("tripwire.runtime")

REPLAY_LIMIT = 5000
COMMIT_TIMEOUT = 30.0


@dataclass
class _Job:
    tenant: int
    events: list[Event]
    future: Future[list[dict[str, Any]]]


class Service:
    """Owns the writer thread, the per-tenant pipelines and their persisted state."""

    def __init__(
        self,
        engine: Engine,
        config: RuntimeConfig,
        max_batch: int = 2000,
        calibrate: Literal["process", "inline"] = "process",
    ) -> None:
        self.engine = engine
        self.config = config
        self.max_batch = max_batch
        self.pipelines: dict[int, Pipeline] = {}
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        # Drift calibration (bootstrap run lengths, about a second per agent) runs in a separate
        # process so it never holds the GIL the ingest path needs.
        self._calib: Executor | None = (
            ProcessPoolExecutor(
                1,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=die_with_parent,  # no orphan after a kill -9 of the server
                initargs=(os.getpid(),),
            )
            if calibrate == "process"
            else None
        )
        self._state_rows: list[dict[str, Any]] = []
        self._stopping = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if engine.dialect.name == "sqlite":
            # SQLite checkpoints the WAL into the database inside whichever commit crosses 1,000
            # pages, and that commit then waits for the copy and an fsync: tens of ms on the
            # ingest path. Here the writer's connections never checkpoint; a side thread does
            # (PASSIVE: it never blocks the writer), and the last one on stop truncates the WAL.
            event.listen(engine, "checkout", store.no_autocheckpoint)
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="tripwire-checkpoint", daemon=True
            )
            self._checkpointer.start()
        self._thread = threading.Thread(target=self._loop, name="tripwire-writer", daemon=True)
        self._thread.start()

    # -- public -----------------------------------------------------------------------------
    def submit(self, tenant: int, events: list[Event]) -> Future[list[dict[str, Any]]]:
        """Queue events; after commit the future gives ``[{id, score, action, audit, ...}]``."""
        fut: Future[list[dict[str, Any]]] = Future()
        self._queue.put(_Job(tenant, events, fut))
        return fut

    async def commit(
        self, tenant: int, events: list[Event], timeout: float = COMMIT_TIMEOUT
    ) -> list[dict[str, Any]]:
        """:meth:`submit` for a request handler: await the commit, or raise
        :class:`StoreUnavailable` (nothing acknowledged) when it fails or takes over ``timeout``."""
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self.submit(tenant, events)), timeout)
        except TimeoutError as exc:
            raise StoreUnavailable("the store did not commit in time; retry") from exc
        except Exception as exc:
            raise StoreUnavailable(
                f"the store is unavailable ({type(exc).__name__}); retry"
            ) from exc

    def process_now(self, tenant: int, events: list[Event]) -> list[dict[str, Any]]:
        return self.submit(tenant, events).result(timeout=60)

    def barrier(self, timeout: float = 60.0) -> None:
        """Return once everything submitted before this call is committed and fed to drift."""
        self.submit(0, []).result(timeout=timeout)

    def _checkpoint_loop(self) -> None:
        while not self._stopping.wait(0.5):
            try:
                with self.engine.connect() as conn:
                    store.wal_checkpoint(conn, "PASSIVE")
            except Exception as exc:  # the next round retries; the WAL only grows meanwhile
                log.warning("WAL checkpoint failed: %s", type(exc).__name__)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)
        self._stopping.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=10)
            event.remove(self.engine, "checkout", store.no_autocheckpoint)
            try:
                with self.engine.connect() as conn:
                    store.wal_checkpoint(conn, "TRUNCATE")
            except Exception as exc:
                log.warning("final WAL checkpoint failed: %s", type(exc).__name__)
        if self._calib is not None:
            self._calib.shutdown(wait=False, cancel_futures=True)

    def template(self) -> Pipeline:
        """A pipeline built from the config (names of monitors), for read-only listings."""
        return Pipeline(self.config)

    # -- writer thread ----------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs = [job]
            n = len(job.events)
            stop = False
            while n < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                jobs.append(nxt)
                n += len(nxt.events)
            try:
                self._write(jobs)
            except Exception as exc:  # the DB is down or full: fail these requests, keep serving
                log.error("commit failed: %s", type(exc).__name__)
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(exc)
            if stop:
                return

    def _pipeline(self, tenant: int) -> Pipeline:
        p = self.pipelines.get(tenant)
        if p is None:
            p = Pipeline(self.config, executor=self._calib)
            self._restore_health(tenant, p)
            if p.drift is not None:
                p.drift.on_calibrated = lambda a, t=tenant: self._state_rows.extend(
                    self._state_row(t, a)
                )
            self.pipelines[tenant] = p
        return p

    def _write(self, jobs: list[_Job]) -> None:
        now = datetime.now(UTC)
        rows: list[dict[str, Any]] = []
        meta: list[tuple[_Job, Pipeline, Event, Processed]] = []
        for j in jobs:
            if not j.events:
                continue
            p = self._pipeline(j.tenant)
            for e in j.events:
                pr = p.process(e)
                rows.append(queries.event_row(j.tenant, e, pr.verdict, now))
                meta.append((j, p, e, pr))
        if not rows:
            for j in jobs:
                j.future.set_result([])
            return
        with self.engine.begin() as conn:
            ids = queries.insert_events(conn, rows)
            alerts: list[Alert] = []
            audit_rows: list[dict[str, Any]] = []
            touched: dict[int, Pipeline] = {}
            for eid, (j, p, e, pr) in zip(ids, meta, strict=True):
                v = pr.verdict
                if v.action != "allow":
                    alerts.append(Alert.for_verdict(j.tenant, eid, e.agent, v, now))
                if pr.audit_reason is not None:
                    audit_rows.append(
                        queries.audit_row(j.tenant, eid, v.score, pr.audit_reason, now)
                    )
                alerts.extend(Alert.for_demotion(j.tenant, h, now) for h in pr.demoted)
                if pr.honeypot:
                    touched[j.tenant] = p
            queries.insert_alerts(conn, alerts)
            queries.insert_audit_items(conn, audit_rows)
            for tenant, p in touched.items():
                self._save_health(conn, tenant, p, now)
        results: dict[int, list[dict[str, Any]]] = {}
        for eid, (j, _p, _e, pr) in zip(ids, meta, strict=True):
            results.setdefault(id(j), []).append(
                {
                    "id": eid,
                    "score": round(pr.verdict.score, 4),
                    "action": pr.verdict.action,
                    "audit": pr.verdict.audit,
                    "monitors": pr.verdict.as_json(),
                }
            )
        for j in jobs:
            j.future.set_result(results.get(id(j), []))
        self._after_commit(list(ids), meta, now)

    def _after_commit(
        self, ids: list[int], meta: list[tuple[_Job, Pipeline, Event, Processed]], now: datetime
    ) -> None:
        alarms: list[tuple[int, Alarm]] = []
        for eid, (j, p, e, pr) in zip(ids, meta, strict=True):
            if p.drift is not None and e.agent not in p.drift.agents:
                self._restore_agent(j.tenant, p, e.agent, eid)
            alarms.extend((j.tenant, a) for a in p.committed(eid, e, pr.verdict))
        if not alarms and not self._state_rows:
            return
        with self.engine.begin() as conn:
            queries.insert_alerts(conn, [Alert.for_drift(t, a, now) for t, a in alarms])
            for t, a in alarms:
                queries.count_drift_alarm(conn, t, a, now)
            queries.insert_drift_state(conn, self._state_rows)
            self._state_rows = []

    # -- persisted state --------------------------------------------------------------------
    def _state_row(self, tenant: int, a: AgentDrift) -> list[dict[str, Any]]:
        assert a.params is not None
        now = datetime.now(UTC)
        return [
            {
                "tenant_id": tenant,
                "agent": a.agent,
                "feature": f,
                "detector": k,
                "params": p,
                "last_event_id": a.calibrated_from,
                "n_seen": 0,
                "alarms": 0,
                "state": {"baseline_tools": sorted(a.baseline_tools)},
                "updated_at": now,
            }
            for f, kinds in a.params.items()
            for k, p in kinds.items()
        ]

    def _save_health(self, conn: Connection, tenant: int, p: Pipeline, now: datetime) -> None:
        for name, h in p.guard.health.items():
            vals = {
                "trusted": h.trusted,
                "demoted": h.demoted,
                "honeypots_sent": h.sent,
                "honeypots_caught": h.caught,
                "cusum": h.cusum.stat,
                "demoted_at": now if h.demoted else None,
                "updated_at": now,
            }
            queries.save_monitor_health(conn, tenant, name, vals)

    def _restore_health(self, tenant: int, p: Pipeline) -> None:
        with self.engine.connect() as conn:
            rows = queries.monitor_health(conn, tenant)
        for r in rows:
            h = p.guard.health.get(r.monitor)
            if h is None:
                continue
            h.trusted, h.demoted = bool(r.trusted), bool(r.demoted)
            h.sent, h.caught, h.cusum.stat = int(r.honeypots_sent), int(r.honeypots_caught), r.cusum

    def _restore_agent(self, tenant: int, p: Pipeline, agent: str, before_id: int) -> None:
        """Rebuild one agent's drift detectors from persisted parameters and stored events."""
        assert p.drift is not None
        d = p.drift
        with self.engine.connect() as conn:
            rows = queries.drift_state(conn, tenant, agent)
            if rows:
                since = int(rows[0].last_event_id)
                past = queries.replay_events(conn, tenant, agent, before_id, since, REPLAY_LIMIT)
            else:
                past = queries.replay_events(conn, tenant, agent, before_id, None, d.baseline_n)
        a = d.agent(agent)
        if rows:
            params: dict[str, dict[str, dict[str, float]]] = {}
            for r in rows:
                params.setdefault(r.feature, {})[r.detector] = dict(r.params)
            a.install(params, set(rows[0].state.get("baseline_tools", [])), rows[0].last_event_id)
            for r in past:
                a.feed(r.id, r.type, r.content, r.tool, r.score)  # alarms were raised before
            a.alarms = sum(int(r.alarms) for r in rows)
        else:
            for r in past:
                feats = features(r.type, r.content, r.tool, r.score, None)
                for f, v in feats.items():
                    a.baseline[f].append(v)
                if r.type == "tool_call" and r.tool:
                    a.baseline_tools.add(r.tool)


__all__ = ["Service"]
