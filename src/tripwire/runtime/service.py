"""The ingest path: one writer thread that scores events and commits them in groups.

Requests hand their events to :meth:`Service.submit` and wait on a future that resolves only after
the transaction holding those events has committed, so a 2xx always means "stored". Concurrent
requests are committed together (group commit), which is what lets SQLite take thousands of
events a second while every acknowledgement still waits for its commit. One thread owns this
process's monitor, honeypot and drift state, so none of it needs Python locks.

Several processes may write one PostgreSQL database (replicas behind a load balancer) and answer
as one: each group's transaction first locks the ``tenant_state`` row of every tenant in it
(``SELECT ... FOR UPDATE``, in tenant order), reloads the budget, honeypot schedule and monitor
records when another writer committed since (the row's version moved), and writes them back with
the events. Drift is fed by one replica per tenant, elected by a session advisory lock that the
server releases when that replica's connection dies (docs/scaling.md). SQLite has one writer
process (``tripwire serve`` holds a lock file), so the reload only follows a failed transaction.

One request never fails another: its events are checked against what every backend can store
before scoring, and when a group's transaction fails all the same, its requests are committed one
by one, so only the one at fault fails (as one PostgreSQL client's error never aborts another's
transaction). Events with an idempotency key that is already stored are answered from the store,
not stored again; two requests sharing a key are never in one group, so the second finds the
first's events. A waiter that gave up before the writer took its request leaves nothing stored;
once taken, a request is committed and answered even when nobody waits any more.

A request may carry the id of the API key it came with (the ingest routes check keys against an
in-process cache, :class:`~tripwire.runtime.keys.Keys`): the group's transaction confirms those
keys are still live in one read, and a request whose key was revoked, or whose tenant was
deleted, in the meantime fails with :class:`~tripwire.runtime.errors.KeyRefused` and stores nothing.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import queue
import threading
import time
from collections import deque
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.exc import DataError

from tripwire.runtime import queries, store
from tripwire.runtime.alerts import Alert
from tripwire.runtime.drift import AgentDrift, Alarm
from tripwire.runtime.errors import ApiError, StoreRejected, StoreUnavailable
from tripwire.runtime.events import Event, evaluation_values
from tripwire.runtime.groupcommit import (
    Job,
    Part,
    Stored,
    insert,
    live,
    replay,
    stored,
    unreachable,
)
from tripwire.runtime.lifeline import die_with_parent
from tripwire.runtime.pipeline import Pipeline, Processed, RuntimeConfig

log = logging.getLogger("tripwire.runtime")

REPLAY_LIMIT = 5000
COMMIT_TIMEOUT = 30.0
DRIFT_LOCK_NS = 0x7477  # first key of the session advisory locks that elect drift owners


def _tool_call(conn: Connection, tenant: int, agent: str) -> Event | None:
    r = queries.last_tool_call(conn, tenant, agent)
    if r is None:
        return None
    return Event(agent, "tool_call", r.content, r.tool, r.arguments, r.session, r.model)


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
        # Each tenant's state version as this writer last committed or loaded it; a state row
        # with another version was moved by another writer (or a failed transaction).
        self._versions: dict[int, int] = {}
        self._has_state: set[int] = set()
        self._before: dict[int, int] = {}  # the tenant's newest event id before our last group
        self.replicated = engine.dialect.name == "postgresql"
        self._owned: set[int] = set()  # tenants whose drift this replica feeds
        self._fed: dict[int, int] = {}  # newest event id fed to drift, per owned tenant
        self._tried: dict[int, float] = {}
        self._polled = 0.0
        self._lock_conn: Connection | None = None
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
    def submit(
        self, tenant: int, events: list[Event], key_id: int | None = None
    ) -> Future[list[dict[str, Any]]]:
        """Queue events; after commit the future gives ``[{id, score, action, audit, ...}]``.
        With ``key_id``, the commit first confirms that key is still live."""
        fut: Future[list[dict[str, Any]]] = Future()
        self._queue.put(Job(tenant, events, fut, key_id))
        return fut

    async def commit(
        self,
        tenant: int,
        events: list[Event],
        timeout: float = COMMIT_TIMEOUT,
        key_id: int | None = None,
    ) -> list[dict[str, Any]]:
        """:meth:`submit` for a request handler: await the commit, or raise
        :class:`StoreUnavailable` (nothing acknowledged) when it fails or takes over ``timeout``
        (then the commit may still land: the message says so), :class:`StoreRejected` when the
        database refuses the request's own values, :class:`KeyRefused` when ``key_id`` was
        revoked (or its tenant deleted) before the commit."""
        retry = (
            "retrying with the same idempotency keys is safe"
            if events and all(e.key is not None for e in events)
            else "a retry may store them twice (send an Idempotency-Key to make retries safe)"
        )
        try:
            return await asyncio.wait_for(
                asyncio.wrap_future(self.submit(tenant, events, key_id)), timeout
            )
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
        self._disown()  # another replica may take this one's tenants' drift from now on

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
                        if jobs:
                            job = self._queue.get(block=False)
                        elif self.replicated:
                            job = self._queue.get(timeout=0.5)
                        else:
                            job = self._queue.get()
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
                if stop:
                    return
                self._poll_drift()
                continue
            try:
                self._write(jobs)
            except Exception as exc:  # the DB is down or full: fail these requests, keep serving
                log.error("commit failed: %s", type(exc).__name__)
                for j in jobs:
                    if not j.future.done():
                        j.future.set_exception(exc)
            self._poll_drift()

    def _pipeline(self, tenant: int) -> Pipeline:
        p = self.pipelines.get(tenant)
        if p is None:
            p = Pipeline(self.config, executor=self._calib)
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
        try:
            fresh = self._commit(jobs, now)
        except Exception as exc:
            if len(jobs) == 1:
                log.error("commit failed: %s", type(exc).__name__)
                if not jobs[0].future.done():
                    jobs[0].future.set_exception(exc)
                return
            log.warning(
                "group commit failed (%s): committing its %d requests one by one",
                type(exc).__name__,
                len(jobs),
            )
            fresh = []
            for n, j in enumerate(jobs):
                if j.future.done():
                    continue
                try:
                    fresh += self._commit([j], now)
                except Exception as exc1:
                    log.error("commit failed: %s", type(exc1).__name__)
                    j.future.set_exception(exc1)
                    if unreachable(exc1):
                        for rest in jobs[n + 1 :]:
                            if not rest.future.done():
                                rest.future.set_exception(exc1)
                        return
        self._after_commit(fresh, now)

    def _commit(self, jobs: list[Job], now: datetime) -> list[Part]:
        """One transaction: lock the state row of each tenant in the group (in tenant order, so
        two replicas never deadlock), bring each pipeline up to the committed state when another
        writer moved it, answer stored keys, score, insert, save the state; then answer. On any
        failure the tenants' pipelines are marked stale, so the next transaction reloads what
        was committed (nothing scored here survives a rollback)."""
        tenants = sorted({j.tenant for j in jobs if j.events})
        before: dict[int, int] = {}
        try:
            with self.engine.begin() as conn:
                for t in tenants:
                    if t not in self._has_state:
                        queries.ensure_tenant_state(conn, t, now)
                    row = queries.lock_tenant_state(conn, t)
                    self._has_state.add(t)
                    before[t] = int(row.last_event_id)
                    self._sync(conn, t, row)
                jobs = live(conn, jobs)
                found = stored(conn, jobs)
                parts: list[Part] = []
                for j in jobs:
                    try:
                        parts.append(self._prepare(j, found))
                    except ApiError as exc:  # this request's own fault: it alone fails
                        j.future.set_exception(exc)
                fresh = [pt for pt in parts if pt.new]
                if fresh:
                    insert(conn, fresh, now)
                saved = {t: self._save_state(conn, t, fresh, now) for t in tenants}
        except BaseException:
            for t in tenants:
                self._versions.pop(t, None)
                self._has_state.discard(t)  # its row may have been created in this transaction
            raise
        finally:
            for t in tenants:
                self._unhook(t)
        self._versions.update(saved)
        self._before.update(before)
        for t in tenants:
            self.pipelines[t].budget.committed()
        for pt in parts:
            if not pt.job.future.done():
                pt.job.future.set_result(pt.answer())
        return [pt for pt in fresh if pt.ids]

    def _sync(self, conn: Connection, tenant: int, row: Any) -> None:
        """Hook the tenant's pipeline to this transaction and, when the committed state is not
        the one it holds (another replica wrote, a transaction failed, or it is new), reload it."""
        p = self._pipeline(tenant)
        p.budget.history = lambda n: queries.last_scores(conn, tenant, n)
        p.last_tool_call = lambda agent: _tool_call(conn, tenant, agent)
        if self._versions.get(tenant) == int(row.version):
            return
        for m in p.monitors:  # back to a fresh record, then what is stored
            fresh = p.guard.register(m)
            fresh.trusted, fresh.demoted, fresh.sent, fresh.caught = m.trusted, False, 0, 0
            fresh.cusum.stat = 0.0
        for r in queries.monitor_health(conn, tenant):
            h = p.guard.health.get(r.monitor)
            if h is None:
                continue
            h.trusted, h.demoted = bool(r.trusted), bool(r.demoted)
            h.sent, h.caught, h.cusum.stat = int(r.honeypots_sent), int(r.honeypots_caught), r.cusum
        p.budget.restore(int(row.budget_seen), int(row.budget_spent), float(row.budget_cut))
        p.guard.credit, p.guard.trials = float(row.honeypot_credit), int(row.honeypot_trials)
        p.forget_recent()
        self._versions[tenant] = int(row.version)

    def _unhook(self, tenant: int) -> None:
        p = self.pipelines.get(tenant)
        if p is not None:
            p.budget.history = None
            p.last_tool_call = None

    def _save_state(self, conn: Connection, tenant: int, fresh: list[Part], now: datetime) -> int:
        p = self.pipelines[tenant]
        version = self._versions[tenant] + 1
        ids = [i for pt in fresh if pt.job.tenant == tenant for i in pt.ids]
        values: dict[str, Any] = {
            "version": version,
            "budget_seen": p.budget.seen,
            "budget_spent": p.budget.spent,
            "budget_cut": p.budget.cut,
            "honeypot_credit": p.guard.credit,
            "honeypot_trials": p.guard.trials,
            "updated_at": now,
        }
        if ids:
            values["last_event_id"] = max(ids)
        if tenant in self._owned:
            values["drift_cursor"] = self._fed[tenant]
        queries.save_tenant_state(conn, tenant, values)
        return version

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

    def _after_commit(self, parts: list[Part], now: datetime) -> None:
        """Feed committed events to drift. One process (SQLite) feeds what it committed. On
        PostgreSQL one replica per tenant owns its drift (a session advisory lock, released by
        the server when that replica's connection dies) and feeds the tenant's events in id
        order: its own from memory while no other replica committed in between, else read back
        from the store."""
        alarms: list[tuple[int, Alarm]] = []
        if not self.replicated:
            for pt in parts:
                for eid, (_i, p, e, pr) in zip(pt.ids, pt.new, strict=True):
                    if p.drift is not None and e.agent not in p.drift.agents:
                        self._restore_agent(pt.job.tenant, p, e.agent, eid)
                    alarms.extend((pt.job.tenant, a) for a in p.committed(eid, e, pr.verdict))
        elif self.config.drift:
            mine: dict[int, list[tuple[int, Event, Processed]]] = {}
            for pt in parts:
                for eid, (_i, _p, e, pr) in zip(pt.ids, pt.new, strict=True):
                    mine.setdefault(pt.job.tenant, []).append((eid, e, pr))
            for t, evs in mine.items():
                if t not in self._owned and not self._try_own(t):
                    continue
                p = self._pipeline(t)
                if self._fed[t] != self._before.get(t):  # someone else's events came first
                    alarms.extend((t, a) for a in self._catch_up(t))
                    continue
                for eid, e, pr in evs:
                    assert p.drift is not None
                    if e.agent not in p.drift.agents:
                        self._restore_agent(t, p, e.agent, eid)
                    alarms.extend((t, a) for a in p.committed(eid, e, pr.verdict))
                    self._fed[t] = eid
        self._write_drift(alarms, now)

    def _write_drift(self, alarms: list[tuple[int, Alarm]], now: datetime) -> None:
        if not alarms and not self._state_rows:
            return
        with self.engine.begin() as conn:
            queries.insert_alerts(conn, [Alert.for_drift(t, a, now) for t, a in alarms])
            for t, a in alarms:
                queries.count_drift_alarm(conn, t, a, now)
            queries.insert_drift_state(conn, self._state_rows)
            self._state_rows = []
            # Alarms up to here are written: a replica taking over resumes after them.
            for t in {t for t, _a in alarms} & self._owned:
                queries.save_tenant_state(conn, t, {"drift_cursor": self._fed[t]})

    # -- drift ownership (PostgreSQL) -------------------------------------------------------
    def _try_own(self, tenant: int, force: bool = False) -> bool:
        """Take the tenant's drift if no live replica holds it (tried at most once a second)."""
        clock = time.monotonic()
        if not force and clock - self._tried.get(tenant, -1e9) < 1.0:
            return False
        self._tried[tenant] = clock
        try:
            if self._lock_conn is None:
                self._lock_conn = self.engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT"
                )
            got = bool(
                self._lock_conn.execute(
                    text("SELECT pg_try_advisory_lock(:ns, :t)"), {"ns": DRIFT_LOCK_NS, "t": tenant}
                ).scalar()
            )
        except Exception as exc:  # the lock connection is gone: so are the locks it held
            log.warning("drift ownership check failed: %s", type(exc).__name__)
            self._disown()
            return False
        if not got:
            return False
        with self.engine.connect() as conn:
            row = queries.tenant_state(conn, tenant)
        p = self._pipeline(tenant)
        if p.drift is not None:
            p.drift.agents.clear()  # rebuilt per agent from persisted settings and the store
        self._fed[tenant] = int(row.drift_cursor) if row is not None else 0
        self._owned.add(tenant)
        return True

    def _disown(self) -> None:
        self._owned.clear()
        if self._lock_conn is not None:
            try:
                self._lock_conn.invalidate()
                self._lock_conn.close()
            except Exception:
                pass
            self._lock_conn = None

    def _catch_up(self, tenant: int) -> list[Alarm]:
        """Feed the owned tenant's stored events after the cursor, in id order."""
        p = self._pipeline(tenant)
        assert p.drift is not None
        out: list[Alarm] = []
        while True:
            with self.engine.connect() as conn:
                rows = queries.events_after(conn, tenant, self._fed[tenant], 2000)
            for r in rows:
                if r.agent not in p.drift.agents:
                    self._restore_agent(tenant, p, r.agent, int(r.id))
                out.extend(
                    p.drift.update(
                        r.agent,
                        int(r.id),
                        r.type,
                        r.content,
                        r.tool,
                        r.score,
                        evaluation_values(r.verdicts),
                    )
                )
                self._fed[tenant] = int(r.id)
            if len(rows) < 2000:
                return out

    def _poll_drift(self) -> None:
        """Between groups, at most twice a second: take over the drift of tenants whose owner
        is gone, and feed the owned ones what other replicas committed."""
        if not (self.replicated and self.config.drift):
            return
        clock = time.monotonic()
        if clock - self._polled < 0.5:
            return
        self._polled = clock
        alarms: list[tuple[int, Alarm]] = []
        try:
            with self.engine.connect() as conn:
                rows = queries.tenant_states(conn)
            for r in rows:
                t = int(r.tenant_id)
                idle = int(r.last_event_id) <= int(r.drift_cursor)
                if t not in self._owned and (idle or not self._try_own(t)):
                    continue
                if int(r.last_event_id) > self._fed[t]:
                    alarms.extend((t, a) for a in self._catch_up(t))
                drift = self._pipeline(t).drift
                if drift is not None:
                    alarms.extend((t, a) for a in drift.settle())
            self._write_drift(alarms, datetime.now(UTC))
        except Exception as exc:  # the next poll retries
            log.warning("drift poll failed: %s", type(exc).__name__)

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
                # alarms were raised before
                a.feed(r.id, r.type, r.content, r.tool, r.score, evaluation_values(r.verdicts))
            a.alarms = sum(int(r.alarms) for r in rows)
        else:
            for r in past:
                a.add_baseline(r.type, r.content, r.tool, r.score, evaluation_values(r.verdicts))
                if r.type == "tool_call" and r.tool:
                    a.baseline_tools.add(r.tool)


__all__ = ["Service"]
