"""The expensive reads of ``tripwire serve``: ``GET /v1/drift?last=N`` and the dashboard, first
call (computed) and repeated call (cached until the agent's next event), against a real server
on SQLite over loopback; and the change-point search alone, this PELT against ruptures' on the
same values (``--before``: ruptures takes seconds to minutes at N=5,000).

    python bench/reads.py                      # 5,000 events, drift + dashboard, new PELT only
    python bench/reads.py --before --json      # also ruptures' PELT on the same 5,000 values
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "runtime"))

from server import Server  # noqa: E402

from tripwire.runtime.drift import change_points  # noqa: E402
from tripwire.runtime.keys import create_key  # noqa: E402
from tripwire.runtime.store import make_engine, migrate  # noqa: E402
from tripwire.runtime.traffic import honest_event  # noqa: E402


def _timed(fn: Any, repeat: int) -> tuple[float, Any]:
    """The median wall time of ``repeat`` calls of ``fn`` (seconds) and the last result."""
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), out


def _ruptures(values: list[float]) -> list[int]:
    import ruptures as rpt

    arr = np.asarray(values, dtype=float)
    pen = 3.0 * (float(np.var(arr)) or 1e-6) * math.log(len(arr))
    algo = rpt.Pelt(model="l2", min_size=10, jump=1).fit(arr.reshape(-1, 1))
    return [b for b in algo.predict(pen=pen) if b < len(arr)]


def _login(c: httpx.Client, key: str) -> None:
    c.get("/")
    r = c.post(
        "/login",
        data={"key": key, "csrf": c.cookies["tripwire_csrf"]},
        headers={"Origin": str(c.base_url).rstrip("/")},
    )
    assert r.status_code == 303, r.text


def run(n: int, repeat: int, before: bool, tmp: Path) -> dict[str, Any]:
    url = f"sqlite:///{tmp / 'reads.db'}"
    engine = make_engine(url)
    migrate(engine)
    key = create_key(engine, "bench")
    engine.dispose()
    srv = Server(url, tmp / "server.log").start()
    res: dict[str, Any] = {"events": n, "repeat": repeat}
    try:
        with httpx.Client(
            base_url=srv.url, headers={"Authorization": f"Bearer {key}"}, timeout=600
        ) as c:
            rng = random.Random(0)
            for i in range(0, n, 500):
                evs = [honest_event(rng, "agent-0") for _ in range(min(500, n - i))]
                assert c.post("/v1/events", json={"events": evs}).status_code == 200
            for feature in ("score", "length"):
                q = {"agent": "agent-0", "feature": feature, "last": n}
                first, body = _timed(lambda q=q: c.get("/v1/drift", params=q), 1)
                cached, _ = _timed(lambda q=q: c.get("/v1/drift", params=q), repeat)
                assert body.status_code == 200, body.text
                res[f"drift_{feature}_first_s"] = round(first, 4)
                res[f"drift_{feature}_cached_s"] = round(cached, 4)
                res[f"drift_{feature}_ratio"] = round(first / cached, 1)
            values = body.json()["values"]
            _login(c, key)
            first, page = _timed(lambda: c.get("/"), 1)
            assert "monitors" in page.text
            cached, _ = _timed(lambda: c.get("/"), repeat)
            res["dashboard_first_s"], res["dashboard_cached_s"] = round(first, 4), round(cached, 4)
    finally:
        srv.stop()
    new_s, new_cps = _timed(lambda: change_points(values), 3)
    res["pelt_new_s"] = round(new_s, 4)
    if before:
        old_s, old_cps = _timed(lambda: _ruptures(values), 1)
        assert old_cps == new_cps, (old_cps, new_cps)
        res["pelt_ruptures_s"] = round(old_s, 3)
        res["pelt_speedup"] = round(old_s / new_s, 1)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=5000, help="events of one agent (= last)")
    ap.add_argument("--repeat", type=int, default=5, help="cached calls timed (median)")
    ap.add_argument("--before", action="store_true", help="also time ruptures' PELT")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    a = ap.parse_args()
    if not 20 <= a.events <= 5000:
        ap.error("--events must be 20-5000 (the API's bound on last)")
    with tempfile.TemporaryDirectory() as tmp:
        res = run(a.events, a.repeat, a.before, Path(tmp))
    res["cpus"] = os.cpu_count()
    if a.json:
        print(json.dumps(res, indent=2))
        return
    for k, v in res.items():
        print(f"{k:24} {v}")


if __name__ == "__main__":
    main()
