"""Several ``tripwire serve`` replicas on one PostgreSQL give the answers of one: the same
verdicts, audit picks, honeypot records and alerts for one agent's events sent to them in turn;
a ``kill -9`` of one under load loses no acknowledged event and leaves the honeypot and budget
state equal to a recomputation from the stored events. SQLite refuses a second writer."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select

from tripwire.runtime import queries, store
from tripwire.runtime.budget import AuditBudget
from tripwire.runtime.events import Event, Verdict
from tripwire.runtime.keys import create_key
from tripwire.runtime.pipeline import Pipeline, RuntimeConfig
from tripwire.runtime.traffic import attack_events, honest_event

from .conftest import migrated
from .server import Server

RATE = 0.2  # honeypots per event: many trials in a short test
START_S = 300  # a server import on 2 loaded cores can take minutes
AG = "coder"
OPTS = ("--honeypot-rate", str(RATE), "--drift-baseline", "40", "--drift-arl0", "500")


def _stream(n: int, seed: int) -> list[dict[str, Any]]:
    """One agent's steps, honest with attacks mixed in (blocks, alerts, audits)."""
    rng = random.Random(seed)
    bad = attack_events(AG)
    out = []
    for i in range(n):
        out.append(bad[i // 10 % len(bad)] if i % 10 == 9 else honest_event(rng, AG))
    return out


def _post(url: str, key: str, event: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(
        f"{url}/v1/events", json=event, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    assert r.status_code == 200, r.text
    return dict(r.json()["events"][0])


def _drift_seen(urls: list[str], key: str) -> int:
    """Events the live drift detectors of ``AG`` were fed, on whichever replica owns them."""
    seen = 0
    for url in urls:
        r = httpx.get(
            f"{url}/v1/drift",
            params={"agent": AG},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        live = r.json().get("live")
        if live:
            seen = max(seen, int(live["events_seen"]))
    return seen


def _outcome(engine: Engine, answers: list[dict[str, Any]]) -> dict[str, Any]:
    """What a tenant's monitoring decided, with event ids replaced by positions."""
    pos = {a["id"]: i for i, a in enumerate(answers)}
    with engine.connect() as conn:
        tid = conn.execute(select(store.tenants.c.id)).scalar_one()
        health = {
            r.monitor: (r.honeypots_sent, r.honeypots_caught, r.cusum, r.demoted)
            for r in queries.monitor_health(conn, tid)
        }
        st = queries.tenant_state(conn, tid)
        audits = sorted(pos[r.event_id] for r in conn.execute(select(store.audit_queue.c.event_id)))
        alerts = sorted(
            (pos.get(r.event_id, -1), r.kind, r.monitor, r.severity)
            for r in conn.execute(select(store.alerts)).all()
        )
    assert st is not None
    return {
        "verdicts": [(a["score"], a["action"], a["audit"]) for a in answers],
        "health": health,
        "budget": (st.budget_seen, st.budget_spent, st.budget_cut),
        "honeypots": (st.honeypot_credit, st.honeypot_trials),
        "audits": audits,
        "alerts": alerts,
    }


def _recompute(engine: Engine) -> None:
    """Replay every stored event, in id order, through one fresh pipeline (as one process that
    never stopped would have scored them) and compare with what the replicas stored."""
    cfg = RuntimeConfig(honeypot_rate=RATE, drift=False)
    p = Pipeline(cfg)
    with engine.connect() as conn:
        tid = conn.execute(select(store.tenants.c.id)).scalar_one()
        rows = conn.execute(select(store.events).order_by(store.events.c.id)).all()
        audited = set(conn.execute(select(store.audit_queue.c.event_id)).scalars())
        st = queries.tenant_state(conn, tid)
        health = {r.monitor: r for r in queries.monitor_health(conn, tid)}
    want_audit = set()
    for r in rows:
        e = Event(r.agent, r.type, r.content, r.tool, r.arguments, r.session, r.model)
        pr = p.process(e)
        assert (round(pr.verdict.score, 6), pr.verdict.action) == (round(r.score, 6), r.action), (
            f"event {r.id} scored differently"
        )
        if pr.audit_reason is not None:
            want_audit.add(r.id)
    assert st is not None
    assert audited == want_audit
    assert (
        (st.budget_seen, st.budget_spent)
        == (p.budget.seen, p.budget.spent)
        == (
            len(rows),
            len(want_audit),
        )
    )
    assert st.budget_cut == p.budget.cut
    assert (st.honeypot_credit, st.honeypot_trials) == (p.guard.credit, p.guard.trials)
    assert p.guard.trials > 10
    for name, h in p.guard.health.items():
        r = health[name]
        assert (r.honeypots_sent, r.honeypots_caught, r.cusum, r.demoted) == (
            h.sent,
            h.caught,
            h.cusum.stat,
            h.demoted,
        )


def test_budget_restored_between_groups_picks_as_one() -> None:
    """Writers taking turns: the budget restored from stored counters, its window read back from
    the stored scores, picks the same audits as one budget that saw every event."""
    rng = random.Random(5)
    scores = [rng.random() ** 6 for _ in range(6000)]
    one, turns = AuditBudget(0.02), AuditBudget(0.02)
    stored: list[float] = []
    turns.history = lambda n: stored[-n:] if n else []
    i, group = 0, 0
    while i < len(scores):
        size = 1 + group % 13
        if group % 3 == 0:  # another writer committed in between: reload from the store
            turns.restore(turns.seen, turns.spent, turns.cut)
        for sc in scores[i : i + size]:
            assert turns.consider(Verdict(sc, "allow")) == one.consider(Verdict(sc, "allow"))
            assert turns.cut == one.cut
        stored.extend(scores[i : i + size])
        turns.committed()
        i, group = i + size, group + 1
    assert one.spent > 50


@pytest.mark.postgres
def test_two_replicas_answer_as_one(pg_url: str, tmp_path: Path) -> None:
    import psycopg

    base, _, name = pg_url.rpartition("/")
    one_url = f"{base}/{name}_one"  # the single replica's own database
    with psycopg.connect(f"{base}/postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}_one"')
    try:
        two, one = migrated(pg_url), migrated(one_url)
        k2, k1 = create_key(two, "ops"), create_key(one, "ops")
        a = Server(pg_url, tmp_path / "a.log", *OPTS)
        b = Server(pg_url, tmp_path / "b.log", *OPTS)
        solo = Server(one_url, tmp_path / "solo.log", *OPTS)
        try:
            for srv in (a, b, solo):
                srv.start(timeout=START_S)
            events = _stream(120, seed=3)
            pair = [_post((a, b)[i % 2].url, k2, e) for i, e in enumerate(events)]
            alone = [_post(solo.url, k1, e) for e in events]
            # Drift: one owner per tenant calibrates once, from the same baseline, and is fed
            # every event after it (the owner polls for what the other replica stored).
            after = len(events) - 40
            deadline = time.time() + 60
            while _drift_seen([a.url, b.url], k2) < after or _drift_seen([solo.url], k1) < after:
                assert time.time() < deadline, "drift was not fed every event"
                time.sleep(0.3)
            assert _drift_seen([a.url, b.url], k2) == _drift_seen([solo.url], k1) == after
            with two.connect() as c2, one.connect() as c1:
                d2 = {(r.feature, r.detector): r.params for r in queries.drift_state(c2, 1, AG)}
                d1 = {(r.feature, r.detector): r.params for r in queries.drift_state(c1, 1, AG)}
            assert d1
            assert d2 == d1
        finally:
            for s in (a, b, solo):
                s.stop()
        got, want = _outcome(two, pair), _outcome(one, alone)
        assert got == want
        assert want["health"] and want["audits"] and want["honeypots"][1] > 10
        _recompute(two)
        two.dispose()
        one.dispose()
    finally:
        with psycopg.connect(f"{base}/postgres", autocommit=True) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}_one" WITH (FORCE)')


def _load(urls: list[str], key: str, stop: threading.Event, acked: list[int], worker: int) -> None:
    rng = random.Random(worker)
    bad = attack_events(f"agent-{worker}")
    h = {"Authorization": f"Bearer {key}"}
    clients = [httpx.Client(base_url=u, headers=h, timeout=10) for u in urls]
    n = 0
    try:
        while not stop.is_set():
            n += 1
            ev = bad[n % len(bad)] if n % 7 == 0 else honest_event(rng, f"agent-{worker}")
            c = clients[n % len(clients)]
            try:
                r = c.post("/v1/events", json=ev)
            except httpx.HTTPError:
                continue  # that replica is dead: never acknowledged
            if r.status_code == 200:
                acked.append(r.json()["events"][0]["id"])
    finally:
        for c in clients:
            c.close()


@pytest.mark.postgres
def test_kill9_of_a_replica_loses_nothing_and_keeps_state_consistent(
    pg_url: str, tmp_path: Path
) -> None:
    engine = migrated(pg_url)
    key = create_key(engine, "ops")
    a = Server(pg_url, tmp_path / "a.log", *OPTS)
    b = Server(pg_url, tmp_path / "b.log", *OPTS)
    acked: list[int] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_load, args=([a.url, b.url], key, stop, acked, w)) for w in range(4)
    ]
    try:
        a.start(timeout=START_S)
        b.start(timeout=START_S)
        for t in threads:
            t.start()
        deadline = time.time() + 60
        while len(acked) < 150:
            assert time.time() < deadline, "the load did not get going"
            time.sleep(0.1)
        a.kill9()  # mid-load, transactions in flight
        before = len(acked)
        deadline = time.time() + 30
        while len(acked) < before + 100:  # the survivor keeps acknowledging
            assert time.time() < deadline, "the surviving replica stopped answering"
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            if t.ident is not None:
                t.join(timeout=20)
        a.stop()
        b.stop()
    with engine.connect() as conn:
        ids = set(conn.execute(select(store.events.c.id)).scalars())
    assert set(acked) - ids == set()
    assert len(acked) == len(set(acked))
    _recompute(engine)
    engine.dispose()


def test_sqlite_refuses_a_second_writer(sqlite_url: str, tmp_path: Path) -> None:
    engine = migrated(sqlite_url)
    create_key(engine, "ops")
    first = Server(sqlite_url, tmp_path / "first.log")
    try:
        first.start(timeout=START_S)
        second = subprocess.run(
            [sys.executable, "-m", "tripwire.cli", "serve", "--db", sqlite_url, "--port", "0"],
            capture_output=True,
            text=True,
            timeout=START_S,
        )
        assert second.returncode == 2, second.stderr
        lines = [ln for ln in second.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, second.stderr
        assert "already has a writer" in lines[0]
        assert f"pid {first.proc.pid if first.proc else ''} " in lines[0]
        assert "PostgreSQL" in lines[0]
        # Reading keeps working while the writer runs.
        listed = subprocess.run(
            [sys.executable, "-m", "tripwire.cli", "keys", "list", "--db", sqlite_url],
            capture_output=True,
            text=True,
            timeout=START_S,
        )
        assert listed.returncode == 0, listed.stderr
        assert "ops" in listed.stdout
        assert httpx.get(f"{first.url}/healthz").status_code == 200
        # The kernel drops the lock with its process, kill -9 included: a new writer starts.
        first.kill9()
        again = Server(sqlite_url, tmp_path / "again.log").start(timeout=START_S)
        again.stop()
    finally:
        first.stop()
