"""Expensive reads, bounded and cached: ``/v1/drift`` takes at most 5,000 values (422 beyond),
its stream and change points (and the dashboard's charts) are served from a per-tenant cache until
the agent's next event, and the change-point search itself is the ruptures PELT result computed
from prefix sums (the speed is in bench/reads.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import ruptures as rpt

from tripwire.runtime.drift import change_points
from tripwire.runtime.sessions import open_session

from .conftest import Api


def _ruptures(values: np.ndarray, min_size: int = 10) -> list[int]:
    n = len(values)
    pen = 3.0 * (float(np.var(values)) or 1e-6) * math.log(n)
    algo = rpt.Pelt(model="l2", min_size=min_size, jump=1).fit(values.reshape(-1, 1))
    return [int(b) for b in algo.predict(pen=pen) if b < n]


@pytest.mark.parametrize("seed", range(6))
def test_change_points_equal_ruptures_pelt(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(40, 260))
    steps = np.repeat(rng.normal(0, 2, 4), -(-n // 4))[:n]
    streams = [
        rng.normal(0, 1, n) + steps,  # continuous, with changes
        rng.normal(0, 1, n),  # no change
        np.where(rng.random(n) < 0.15, 0.85, 0.0),  # monitor scores: mostly tied values
        np.where(rng.random(n) < np.linspace(0.05, 0.6, n), 1.0, 0.0),  # a creeping rate
        np.zeros(n),
    ]
    for x in streams:
        assert change_points(x.tolist()) == _ruptures(x)
    assert change_points([1.0] * 19) == []


def _post(api: Api, agent: str, n: int, start: int = 0) -> None:
    events = [
        {"agent": agent, "type": "message", "content": "x" * (1 + (i % 7) * (1 + (i > 90) * 40))}
        for i in range(start, start + n)
    ]
    assert api.post("/v1/events", json={"events": events}).status_code == 200


def test_drift_reads_are_cached_until_the_next_event(api: Api) -> None:
    _post(api, "a", 150)
    reads = lambda: api.client.app.state.reads  # noqa: E731
    q = {"agent": "a", "feature": "length", "last": 5000}
    first = api.get("/v1/drift", params=q)
    assert first.status_code == 200 and len(first.json()["values"]) == 150
    assert first.json()["change_points"], "the length shift at event 91 is found"
    hits, misses = reads().hits, reads().misses
    again = api.get("/v1/drift", params=q)
    # ``live`` is this replica's in-memory detector state, read fresh every time, never cached:
    # on PostgreSQL it appears once this replica has taken the tenant's drift (within a second).
    strip = lambda r: {k: v for k, v in r.json().items() if k != "live"}  # noqa: E731
    assert strip(again) == strip(first)
    assert (reads().hits, reads().misses) == (hits + 1, misses)
    # Another feature, another tenant: their own entries, never this one's.
    assert api.get("/v1/drift", params={**q, "feature": "score"}).status_code == 200
    other = {"Authorization": f"Bearer {api.new_key('tenant-b')}"}
    r = api.client.get("/v1/drift", params=q, headers=other)
    assert r.status_code == 200 and r.json()["values"] == []
    assert reads().misses == misses + 2
    # A new event is a new version: the next read recomputes and shows it.
    _post(api, "a", 1, start=150)
    after = api.get("/v1/drift", params=q).json()
    assert len(after["values"]) == 151 and after["event_ids"][-1] > first.json()["event_ids"][-1]
    assert reads().misses == misses + 3


def test_drift_last_is_bounded(api: Api) -> None:
    r = api.get("/v1/drift", params={"agent": "a", "last": 5001})
    assert r.status_code == 422 and "last" in r.json()["error"] and "5000" in r.json()["error"]


def test_dashboard_charts_are_cached_until_the_next_event(sqlite_api: Api) -> None:
    api = sqlite_api
    _post(api, "a", 150)
    with api.engine.connect() as conn:
        kid, tid = conn.exec_driver_sql("SELECT id, tenant_id FROM api_keys").one()
    api.client.cookies.set("tripwire_session", open_session(api.engine, kid, tid))
    page = api.client.get("/")
    assert 'data-agent="a"' in page.text
    reads = api.client.app.state.reads
    misses = reads.misses
    assert api.client.get("/").text.count("<polyline") == 1
    assert reads.misses == misses and reads.hits >= 1
    _post(api, "a", 1, start=150)
    assert "last 151 events" in api.client.get("/").text
    assert reads.misses == misses + 1
