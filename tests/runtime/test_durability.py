"""``kill -9`` during load loses no acknowledged event, on SQLite and PostgreSQL; the restarted
service resumes (monitor health, drift parameters) and keeps serving."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
from sqlalchemy import select

from tripwire.runtime import store
from tripwire.runtime.keys import create_key

from .conftest import migrated
from .server import Server


def _load(
    url: str, key: str, stop: threading.Event, acked: list[tuple[int, str]], worker: int
) -> None:
    h = {"Authorization": f"Bearer {key}"}
    n = 0
    with httpx.Client(base_url=url, headers=h, timeout=5) as c:
        while not stop.is_set():
            n += 1
            marker = f"w{worker}-{n}"
            batch = {
                "events": [
                    {"agent": f"agent-{worker}", "type": "message", "content": f"{marker}-{i}"}
                    for i in range(5)
                ]
            }
            try:
                r = c.post("/v1/events", json=batch)
            except httpx.HTTPError:
                return  # the server died mid-request: that request was never acknowledged
            if r.status_code == 200:
                for i, e in enumerate(r.json()["events"]):
                    acked.append((e["id"], f"{marker}-{i}"))


def test_kill9_loses_no_acknowledged_event(db_url: str, tmp_path: Path) -> None:
    engine = migrated(db_url)
    key = create_key(engine, "durable")
    drift_opts = ("--drift-baseline", "40", "--drift-arl0", "500")
    srv = Server(db_url, tmp_path / "server.log", *drift_opts).start()
    h = {"Authorization": f"Bearer {key}"}
    acked: list[tuple[int, str]] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_load, args=(srv.url, key, stop, acked, w)) for w in range(4)
    ]
    try:
        for t in threads:
            t.start()
        # Load until agent-0's drift detectors are calibrated (and persisted), then kill -9.
        deadline = time.time() + 60
        while True:
            drift = httpx.get(f"{srv.url}/v1/drift", headers=h, params={"agent": "agent-0"})
            if drift.json()["detectors"]:
                break
            assert time.time() < deadline, "drift never calibrated under load"
            time.sleep(0.2)
        time.sleep(0.5)
        srv.kill9()  # mid-load
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        srv.stop()
    assert len(acked) > 200, "the load did not get going"
    with engine.connect() as conn:
        rows = dict(conn.execute(select(store.events.c.id, store.events.c.content)).all())
    missing = [(i, m) for i, m in acked if rows.get(i) != m]
    assert missing == []
    # Restart on the same database and keep going.
    srv2 = Server(db_url, tmp_path / "server2.log", *drift_opts).start()
    try:
        r = httpx.post(
            f"{srv2.url}/v1/events",
            headers=h,
            json={"agent": "agent-0", "type": "message", "content": "after"},
        )
        assert r.status_code == 200 and r.json()["events"][0]["id"] > max(i for i, _ in acked)
        got = httpx.get(f"{srv2.url}/v1/events", headers=h, params={"agent": "agent-0"}).json()
        assert got["events"], "events from before the kill are readable"
        # The restarted service resumed agent-0's detectors: same calibration, not a new one,
        # and the detectors hold the replayed stream, not just the one event since the restart.
        after = httpx.get(f"{srv2.url}/v1/drift", headers=h, params={"agent": "agent-0"}).json()
        assert after["live"]["calibrated"] is True and after["live"]["events_seen"] > 1
        widths = [s["width"] for k, s in after["live"]["state"].items() if k.endswith("ADWIN")]
        assert widths and max(widths) > 1
        key_of = lambda d: (d["feature"], d["detector"])  # noqa: E731
        assert sorted(map(key_of, after["detectors"])) == sorted(
            map(key_of, drift.json()["detectors"])
        )
        assert {key_of(d): d["params"] for d in after["detectors"]} == {
            key_of(d): d["params"] for d in drift.json()["detectors"]
        }
    finally:
        srv2.stop()
    for log in tmp_path.glob("*.log"):  # no secrets (keys) and no event content in the logs
        text = log.read_text()
        assert key not in text and "w0-1-0" not in text
    engine.dispose()


def _retrying_client(
    url: str, key: str, worker: int, requests: int, acked: dict[str, int], errors: list[str]
) -> None:
    """Send ``requests`` batches, each retried with its Idempotency-Key on 503, a timeout or a
    lost connection (the server killed mid-request) until it is acknowledged."""
    h = {"Authorization": f"Bearer {key}"}
    deadline = time.time() + 150
    with httpx.Client(base_url=url, headers=h, timeout=httpx.Timeout(0.25, connect=1.0)) as c:
        for n in range(requests):
            idem = f"w{worker}-r{n}"
            batch = {
                "events": [
                    {"agent": f"retry-{worker}", "type": "message", "content": f"{idem}-{i}"}
                    for i in range(5)
                ]
            }
            while True:
                try:
                    r = c.post("/v1/events", json=batch, headers={"Idempotency-Key": idem})
                except httpx.HTTPError:
                    r = None
                if r is not None and r.status_code == 200:
                    for i, e in enumerate(r.json()["events"]):
                        acked[f"{idem}-{i}"] = e["id"]
                    break
                if r is not None and r.status_code != 503:
                    errors.append(f"{idem}: {r.status_code} {r.text[:200]}")
                    return
                if time.time() > deadline:
                    errors.append(f"{idem}: not acknowledged before the deadline")
                    return
                time.sleep(0.05)


def test_kill9_with_retries_stores_every_event_exactly_once(db_url: str, tmp_path: Path) -> None:
    """Clients retry (same Idempotency-Key) through a kill -9 and the restart: every event is
    acknowledged, and stored exactly once, under the id it was acknowledged with."""
    engine = migrated(db_url)
    key = create_key(engine, "retrying")
    srv = Server(db_url, tmp_path / "server.log").start()
    acked: dict[str, int] = {}
    errors: list[str] = []
    workers, requests = 8, 40
    threads = [
        threading.Thread(target=_retrying_client, args=(srv.url, key, w, requests, acked, errors))
        for w in range(workers)
    ]
    try:
        for t in threads:
            t.start()
        deadline = time.time() + 60
        while len(acked) < 400:  # mid-burst: a third of the events are in
            assert time.time() < deadline and not errors, (len(acked), errors)
            time.sleep(0.01)
        srv.kill9()
        time.sleep(0.5)  # the clients meet a dead server meanwhile, and keep retrying
        srv.start()  # same port, same database
        for t in threads:
            t.join(timeout=180)
    finally:
        srv.stop()
    assert errors == []
    assert len(acked) == workers * requests * 5
    e = store.events.c
    with engine.connect() as conn:
        rows = conn.execute(select(e.id, e.content).where(e.agent.like("retry-%"))).all()
    contents = [c for _i, c in rows]
    twice = sorted(c for c in set(contents) if contents.count(c) > 1)
    assert twice == [], f"{len(twice)} events stored twice, e.g. {twice[:5]}"
    assert {c: i for i, c in rows} == acked  # each acknowledged id holds its event; no other
    engine.dispose()
