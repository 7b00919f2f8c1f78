"""Loopback load test of ``tripwire serve``: events/s and request latency (p50/p99), SQLite and
PostgreSQL, rules + drift + honeypots on (the shipped defaults).

Bounded: each run stops after ``--seconds`` or ``--max-requests``, whichever comes first; the
load goes to 127.0.0.1 only. Every acknowledged event is checked to be in the database afterwards.

    python bench/serve.py                      # both backends, single events and batches of 20
    python bench/serve.py --backend sqlite --batch 1 --seconds 5

PostgreSQL comes from TRIPWIRE_TEST_PG_URL, else from ``.ci/services.sh``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "runtime"))

from server import Server  # noqa: E402

from tripwire.runtime.keys import create_key  # noqa: E402
from tripwire.runtime.store import make_engine, migrate  # noqa: E402
from tripwire.runtime.traffic import honest_event  # noqa: E402


def _pg_admin() -> str:
    url = os.environ.get("TRIPWIRE_TEST_PG_URL")
    if url:
        return url
    out = subprocess.run(
        ["bash", str(ROOT / ".ci" / "services.sh")], capture_output=True, text=True, check=True
    )
    return out.stdout.strip().splitlines()[-1]


def _fresh_db(backend: str, tmp: Path) -> tuple[str, Any]:
    if backend == "sqlite":
        return f"sqlite:///{tmp / f'bench-{uuid.uuid4().hex[:6]}.db'}", None
    import psycopg

    admin = _pg_admin()
    name = f"tw_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return f"{admin.rpartition('/')[0]}/{name}", drop


async def _worker(
    client: httpx.AsyncClient,
    batch: int,
    deadline: float,
    budget: list[int],
    lat: list[float],
    acked: list[int],
    seed: int,
    keyed: bool = False,
) -> None:
    rng = random.Random(seed)
    n = 0
    while time.perf_counter() < deadline and budget[0] > 0:
        budget[0] -= 1
        n += 1
        events = [honest_event(rng, f"agent-{rng.randrange(8)}") for _ in range(batch)]
        body = events[0] if batch == 1 else {"events": events}
        headers = {"Idempotency-Key": f"bench-{seed}-{n}"} if keyed else {}
        t0 = time.perf_counter()
        r = await client.post("/v1/events", json=body, headers=headers)
        lat.append(time.perf_counter() - t0)
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:200]}")
        acked.extend(e["id"] for e in r.json()["events"])


async def _load(
    url: str, key: str, batch: int, conc: int, seconds: float, max_requests: int, keyed: bool
) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as c:
        # Warm-up: take all 8 agents past their drift baseline and wait until their detectors
        # are calibrated, so what is measured is the steady state with drift on.
        rng = random.Random(7)
        t_warm = time.perf_counter()
        for _ in range(20):
            evs = [honest_event(rng, f"agent-{i % 8}") for i in range(200)]
            r = await c.post("/v1/events", json={"events": evs})
            r.raise_for_status()
        while True:
            states = [
                (await c.get("/v1/drift", params={"agent": f"agent-{i}"})).json()["detectors"]
                for i in range(8)
            ]
            if all(states):
                break
            if time.perf_counter() - t_warm > 120:
                raise RuntimeError("drift calibration did not finish within 120 s")
            evs = [honest_event(rng, f"agent-{i % 8}") for i in range(16)]
            await c.post("/v1/events", json={"events": evs})
            await asyncio.sleep(0.5)
        warm: list[float] = []
        await asyncio.gather(
            *[_worker(c, batch, time.perf_counter() + 1.0, [20], warm, [], s) for s in range(conc)]
        )
        lat: list[float] = []
        acked: list[int] = []
        budget = [max_requests]
        t0 = time.perf_counter()
        deadline = t0 + seconds
        await asyncio.gather(
            *[_worker(c, batch, deadline, budget, lat, acked, 100 + s, keyed) for s in range(conc)]
        )
        wall = time.perf_counter() - t0
    arr = np.asarray(lat) * 1000
    return {
        "batch": batch,
        "concurrency": conc,
        "idempotency_keys": keyed,
        "requests": len(lat),
        "events": len(acked),
        "seconds": round(wall, 2),
        "events_per_s": round(len(acked) / wall, 1),
        "requests_per_s": round(len(lat) / wall, 1),
        "p50_ms": round(float(np.percentile(arr, 50)), 2),
        "p99_ms": round(float(np.percentile(arr, 99)), 2),
        "max_ms": round(float(arr.max()), 2),
        "acked_ids": acked,
    }


def run_backend(
    backend: str,
    batches: list[int],
    conc: int,
    seconds: float,
    max_requests: int,
    tmp: Path,
    keyed: bool = False,
) -> list[dict[str, Any]]:
    out = []
    for batch in batches:
        url, drop = _fresh_db(backend, tmp)
        engine = make_engine(url)
        migrate(engine)
        key = create_key(engine, "bench")
        srv = Server(url, tmp / f"serve-{backend}.log").start()
        try:
            res = asyncio.run(_load(srv.url, key, batch, conc, seconds, max_requests, keyed))
        finally:
            srv.stop()
        from sqlalchemy import func, select

        from tripwire.runtime import store

        acked = res.pop("acked_ids")
        with engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(store.events)).scalar_one()
            present = conn.execute(
                select(func.count()).where(store.events.c.id.in_(acked[-1000:]))
            ).scalar_one()
        engine.dispose()
        if drop is not None:
            drop()
        res.update(
            backend=backend,
            stored_events=stored,
            last_1000_acked_present=present == min(1000, len(acked)),
        )
        out.append(res)
        print(json.dumps(res), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument("--batch", default="1,20", help="events per request, comma-separated")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--max-requests", type=int, default=50_000)
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument(
        "--idempotency",
        action="store_true",
        help="send every request with its own Idempotency-Key (the retry-safe path)",
    )
    a = ap.parse_args()
    backends = ["sqlite", "postgres"] if a.backend == "both" else [a.backend]
    batches = [int(x) for x in a.batch.split(",")]
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for b in backends:
            results += run_backend(
                b, batches, a.concurrency, a.seconds, a.max_requests, Path(tmp), a.idempotency
            )
    print(f"\n{'backend':9} {'batch':>5} {'events/s':>9} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7}")
    for r in results:
        print(
            f"{r['backend']:9} {r['batch']:>5} {r['events_per_s']:>9} {r['requests_per_s']:>8} "
            f"{r['p50_ms']:>7} {r['p99_ms']:>7}"
        )
    print(
        f"target on 2 cores: >= 2000 events/s with p99 < 50 ms; cpus={os.cpu_count()} "
        f"python={platform.python_version()}"
    )
    if a.out:
        from tripwire._io import write_json

        write_json(a.out, {"results": results, "cpus": os.cpu_count()})


if __name__ == "__main__":
    main()
