"""The ingest path: one writer thread that scores events and commits them in groups.

Requests hand their events to :meth:`Service.submit` and wait on a future that resolves only after
the transaction holding those events has committed, so a 2xx always means "stored". Concurrent
requests are committed together (group commit), which is what lets SQLite take thousands of
events a second while every acknowledgement still waits for its commit. One thread owns all
monitor, honeypot and drift state, so none of it needs locks.

One request never fails another: its events are checked against what every backend can store
before scoring, and when a group's transaction fails all the same, its requests are committed one
by one, so only the one at fault fails (as one PostgreSQL client's error never aborts another's
transaction). Events with an idempotency key that is already stored are answered from the store,
not stored again; two requests sharing a key are never in one group, so the second finds the
first's events. A waiter that gave up before the writer took its request leaves nothing stored;
once taken, a request is committed and answered even when nobody waits any more.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import queue
import threading
from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Engine, event
from sqlalchemy.exc import DataError

from tripwire.runtime import queries, store
from tripwire.runtime.alerts import Alert
from tripwire.runtime.drift import AgentDrift, Alarm, features
from tripwire.runtime.errors import ApiError, StoreRejected, StoreUnavailable
from tripwire.runtime.events import Event
from tripwire.runtime.groupcommit import (
    Job,
    Part,
    Stored,
    insert,
    replay,
    stored,
    unreachable,
)
from tripwire.runtime.lifeline import die_with_parent
from tripwire.runtime.pipeline import Pipeline, RuntimeConfig

log = logging.getLogger("tripwire.runtime")

REPLAY_LIMIT = 5000
COMMIT_TIMEOUT = 30.0


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
        self._queue: queue.Queue[Job | None] = queue.Queue()
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
        self._queue.put(Job(tenant, events, fut))
        return fut

    async def commit(
        self, tenant: int, events: list[Event], timeout: float = COMMIT_TIMEOUT
    ) -> list[dict[str, Any]]:
        """:meth:`submit` for a request handler: await the commit, or raise
        :class:`StoreUnavailable` (nothing acknowledged) when it fails or takes over ``timeout``
        (then the commit may still land: the message says so), :class:`StoreRejected` when the
        database refuses the request's own values."""
        retry = (
            "retrying with the same idempotency keys is safe"
            if events and all(e.key is not None for e in events)
            else "a retry may store them twice (send an Idempotency-Key to make retries safe)"
        )
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self.submit(tenant, events)), timeout)
        except TimeoutError as exc:
            raise StoreUnavailable(
                f"the store did not answer within {timeout:g} s: the events may or may not "
                f"be stored; {retry}"
            ) from exc
        except ApiError:
            raise
        except DataError as exc:
            raise StoreRejected(
                "the database refused a value of these events (DataError); nothing was stored"
            ) from exc
        except Exception as exc:
            raise StoreUnavailable(
                f"the store is unavailable ({type(exc).__name__}): the events were not "
                f"acknowledged; {retry}"
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
        held: deque[Job] = deque()  # jobs sharing a key with the group before: next group
        stop = False
        while True:
            jobs: list[Job] = []
            keys: set[tuple[int, str]] = set()
            later: list[Job] = []
            n = 0
            while n < self.max_batch:
                if held:
                    job: Job | None = held.popleft()
                elif stop:
                    break
                else:
                    try:
                        job = self._queue.get(block=not jobs)
                    except queue.Empty:
                        break
                if job is None:
                    stop = True
                    continue
                ks = job.idem_keys()
                if ks & keys:
                    later.append(job)
                    continue
                keys |= ks
                jobs.append(job)
                n += len(job.events)
            held.extendleft(reversed(later))
            if not jobs:
                return
            try:
                self._write(jobs)
            except Exception as exc:  # the DB is down or full: fail these requests, keep serving
                log.error("commit failed: %s", type(exc).__name__)
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(exc)

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

    def _write(self, jobs: list[Job]) -> None:
        # A waiter that gave up before its turn: nothing of it is stored. From here on a future
        # can no longer be cancelled, so no waiter that gives up can fail this group.
        jobs = [j for j in jobs if j.future.set_running_or_notify_cancel()]
        now = datetime.now(UTC)
        found = stored(self.engine, jobs)
        parts: list[Part] = []
        for j in jobs:
            try:
                parts.append(self._prepare(j, found))
            except ApiError as exc:  # this request's own fault: it alone fails
                j.future.set_exception(exc)
        fresh = [pt for pt in parts if pt.new]
        self._insert_isolated(fresh, now)
        for pt in parts:
            if not pt.job.future.done():
                pt.job.future.set_result(pt.answer())
        self._after_commit([pt for pt in fresh if pt.ids], now)

    def _prepare(self, j: Job, found: dict[int, Stored]) -> Part:
        """Check a request's events, answer the stored ones, score the rest; raises
        :class:`StoreRejected` (nothing scored) for an event no backend can store or a key
        already used for a different event."""
        rows, audited = found.get(j.tenant, ({}, set()))
        part = Part(j, [None] * len(j.events))
        first: dict[str, int] = {}
        for i, e in enumerate(j.events):
            where = f"events[{i}]: " if len(j.events) > 1 else ""
            if why := e.unstorable():
                raise StoreRejected(f"{where}{why}")
            if e.key is not None and first.setdefault(e.key, i) != i:
                raise StoreRejected(
                    f"{where}idempotency key {e.key!r} repeats that of events[{first[e.key]}]"
                )
            row = rows.get(e.key) if e.key is not None else None
            if row is not None:
                if not e.same_as(row):
                    raise StoreRejected(
                        f"{where}idempotency key {e.key!r} was already used for a different "
                        f"event (id {row.id}); use a new key for a new event"
                    )
                part.answers[i] = replay(row, audited)
        for i, e in enumerate(j.events):
            if part.answers[i] is None:
                p = self._pipeline(j.tenant)
                part.new.append((i, p, e, p.process(e)))
        return part

    def _insert_isolated(self, parts: list[Part], now: datetime) -> None:
        """Commit ``parts`` in one transaction; when it fails, commit them one by one, so that
        only the request at fault fails."""
        if not parts:
            return
        try:
            with self.engine.begin() as conn:
                insert(conn, parts, now)
            return
        except Exception as exc:
            if len(parts) == 1:
                log.error("commit failed: %s", type(exc).__name__)
                parts[0].fail(exc)
                return
            log.warning(
                "group commit failed (%s): committing its %d requests one by one",
                type(exc).__name__,
                len(parts),
            )
        for n, pt in enumerate(parts):
            try:
                with self.engine.begin() as conn:
                    insert(conn, [pt], now)
            except Exception as exc:
                log.error("commit failed: %s", type(exc).__name__)
                pt.fail(exc)
                if unreachable(exc):
                    for rest in parts[n + 1 :]:
                        rest.fail(exc)
                    return

    def _after_commit(self, parts: list[Part], now: datetime) -> None:
        alarms: list[tuple[int, Alarm]] = []
        for pt in parts:
            for eid, (_i, p, e, pr) in zip(pt.ids, pt.new, strict=True):
                if p.drift is not None and e.agent not in p.drift.agents:
                    self._restore_agent(pt.job.tenant, p, e.agent, eid)
                alarms.extend((pt.job.tenant, a) for a in p.committed(eid, e, pr.verdict))
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
