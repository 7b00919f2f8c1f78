"""Behaviour shift: calibrated river detectors stay quiet on honest traffic and fire after a shift;
ruptures localises the change; a restarted service resumes the detectors' state."""

from __future__ import annotations

import random
import time

import numpy as np

from tripwire.runtime.drift import (
    DriftWatch,
    calibrate,
    change_points,
    detector_state,
    estimate_arl,
)
from tripwire.runtime.pipeline import RuntimeConfig
from tripwire.runtime.traffic import honest_event

from .conftest import open_api


def _feed(w: DriftWatch, bodies: list[dict], start: int = 1) -> list:
    alarms = []
    for i, b in enumerate(bodies, start):
        alarms += w.update(b["agent"], i, b["type"], b.get("content"), b.get("tool"), 0.0)
    return alarms


def test_calibration_meets_the_target_run_length() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(3.0, 0.5, 300).tolist()
    p = calibrate("PageHinkley", base, arl0=2000, seed=1)
    # On a fresh stationary stream from the same distribution, false alarms are rare.
    fresh = rng.normal(3.0, 0.5, 20000).tolist()
    arl = estimate_arl(
        "PageHinkley", p["param"], p["scale"], fresh, 20000, np.random.default_rng(9)
    )
    assert arl >= 2000
    a = calibrate("ADWIN", base, arl0=2000, seed=1)
    assert a["arl_estimate"] >= 2000


def test_quiet_on_honest_traffic_fires_after_a_shift() -> None:
    rng = random.Random(0)
    w = DriftWatch(baseline_n=200, arl0=2000)
    honest = [honest_event(rng, "agent-0") for _ in range(1700)]
    assert _feed(w, honest) == []
    assert w.agents["agent-0"].calibrated
    # The agent starts using tools it never used and writing far longer messages.
    shifted = []
    for _ in range(300):
        if rng.random() < 0.5:
            shifted.append(
                {
                    "agent": "agent-0",
                    "type": "tool_call",
                    "tool": "http_post",
                    "arguments": {"url": "https://203.0.113.5/x"},
                }
            )
        else:
            shifted.append({"agent": "agent-0", "type": "message", "content": "z" * 3000})
    alarms = _feed(w, shifted, start=1701)
    assert alarms, "no drift alarm after a clear shift"
    first = min(a.event_id for a in alarms)
    assert first - 1700 <= 60
    assert {a.feature for a in alarms} & {"new_tool", "length", "tool_call"}


def test_ruptures_localises_the_change() -> None:
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(0.1, 0.05, 240), rng.normal(0.6, 0.05, 160)])
    cps = change_points(x.tolist())
    assert len(cps) == 1 and abs(cps[0] - 240) <= 3
    assert change_points(rng.normal(0, 1, 300).tolist()) == []


def test_restart_resumes_detector_state(sqlite_url: str) -> None:
    cfg = RuntimeConfig(drift_baseline=60, drift_arl0=300, honeypot_rate=0.0)
    rng = random.Random(5)
    bodies = [honest_event(rng, "agent-r") for _ in range(400)]
    client, api = open_api(sqlite_url, cfg)
    with client:
        api.post("/v1/events", json={"events": bodies[:60]})
        svc = client.app.state.service
        deadline = time.time() + 60
        while True:  # wait for the background calibration
            a = svc.pipelines[1].drift.agents.get("agent-r")
            if a is not None and (a.calibrated or (a.pending is not None and a.pending.done())):
                break
            assert time.time() < deadline
            time.sleep(0.05)
        api.post("/v1/events", json={"events": bodies[60:250]})
        svc.barrier()
        before = svc.pipelines[1].drift.agents["agent-r"]
        assert before.calibrated
    # A new process on the same database: detectors come back from persisted parameters + replay.
    client2, api2 = open_api(sqlite_url, cfg)
    with client2:
        api2.h = api.h
        api2.post("/v1/events", json={"events": bodies[250:]})
        client2.app.state.service.barrier()
        after = client2.app.state.service.pipelines[1].drift.agents["agent-r"]
        assert after.params == before.params
    # Reference: one uninterrupted watch over the same stored stream.
    ref = DriftWatch(baseline_n=60, arl0=300)
    _feed(ref, bodies)
    want = ref.agents["agent-r"]
    assert want.params == after.params
    for key, det in want.detectors.items():
        assert detector_state(after.detectors[key]) == detector_state(det), key
    drift = api2.get("/v1/drift", params={"agent": "agent-r", "feature": "length"}).json()
    assert len(drift["values"]) == 400 and len(drift["detectors"]) == 8
