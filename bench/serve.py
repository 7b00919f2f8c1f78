"""Loopback load test of ``tripwire serve``: events/s and request latency (p50/p99), SQLite and
PostgreSQL, rules + drift + honeypots on (the shipped defaults).

By default the load comes from ``wrk`` (a C load generator, Debian package ``wrk``), started by
this script, one event per POST, each with its own ``idempotency_key``: what is measured is the
server, not a Python client sharing its cores. It runs 1 replica on SQLite, 1 replica on
PostgreSQL and 2 replicas on PostgreSQL (two ``tripwire serve`` processes on one database, one
``wrk`` per replica with half the connections each, run at the same time; events/s is their sum,
p50/p99 the worse of the two), and prints the 2-vs-1 ratio. ``--client python`` is the former
httpx client (batches, ``--idempotency``).

Bounded: each run stops after ``--seconds`` (and, with ``--client python``, ``--max-requests``);
the load goes to 127.0.0.1 only. Every acknowledged event id is checked to be in the database
afterwards.

    python bench/serve.py                                  # wrk: sqlite x1, postgres x1 and x2
    python bench/serve.py --backend postgres --replicas 1,2 --seconds 10 --json
    python bench/serve.py --client python --backend sqlite --batch 1,10 --seconds 5

PostgreSQL comes from TRIPWIRE_TEST_PG_URL, else from ``.ci/services.sh``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
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
        await _warm(c)
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
        "client": "python",
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


WARM_TIMEOUT_S = [120.0]  # --warm-timeout


async def _drift(c: httpx.AsyncClient, agent: str) -> dict[str, Any]:
    """``GET /v1/drift``, retried once when the server closed an idle keep-alive connection
    just as the request went out (uvicorn closes them after 5 s)."""
    for attempt in (0, 1):
        try:
            r = await c.get("/v1/drift", params={"agent": agent})
            r.raise_for_status()
            return dict(r.json())
        except httpx.RemoteProtocolError:
            if attempt:
                raise
    raise AssertionError("unreachable")


async def _warm(c: httpx.AsyncClient) -> None:
    """Take all 8 agents past their drift baseline and wait until their detectors are
    calibrated, so what is measured is the steady state with drift on."""
    rng = random.Random(7)
    t_warm = time.perf_counter()
    for _ in range(20):
        evs = [honest_event(rng, f"agent-{i % 8}") for i in range(200)]
        r = await c.post("/v1/events", json={"events": evs})
        r.raise_for_status()
    while True:
        states = [(await _drift(c, f"agent-{i}"))["detectors"] for i in range(8)]
        if all(states):
            break
        if time.perf_counter() - t_warm > WARM_TIMEOUT_S[0]:
            raise RuntimeError(f"drift calibration did not finish within {WARM_TIMEOUT_S[0]:g} s")
        evs = [honest_event(rng, f"agent-{i % 8}") for i in range(16)]
        await c.post("/v1/events", json={"events": evs})
        await asyncio.sleep(0.5)


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
        srv = Server(url, tmp / f"serve-{backend}.log").start(timeout=600)
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
        print(json.dumps(res), flush=True, file=sys.stderr)
    return out


LUA = r"""
-- One event per POST, each with its own idempotency_key; acknowledged ids go to a file per
-- thread (line-buffered, so nothing is lost when wrk exits).
-- `tag` is a global: setup() sets it in each thread's own Lua state (thread:set), which a
-- `local tag` here would shadow (every thread then sent the same idempotency keys, and the
-- server answered half the requests as replays).
local bodies = { %(bodies)s }
tag = "unset"
local n, fh = 0, nil
local count = 0
function setup(thread)
  count = count + 1
  thread:set("tag", "%(run)s-t" .. count)
end
function init(args)
  fh = io.open("%(acks)s/acks-" .. tag .. ".txt", "w")
  fh:setvbuf("line")
end
function request()
  n = n + 1
  local body = '{"idempotency_key":"' .. tag .. "-" .. n .. '",' .. bodies[(n %% #bodies) + 1]
  return wrk.format("POST", "/v1/events", {
    ["Authorization"] = "Bearer %(key)s", ["Content-Type"] = "application/json"}, body)
end
function response(status, headers, body)
  if status == 200 then
    fh:write(string.match(body, '"id":%%s*(%%d+)'), "\n")
  end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRKJSON {"requests":%%d,"duration_us":%%d,"non_2xx":%%d,' ..
    '"socket_errors":%%d,"p50_us":%%d,"p90_us":%%d,"p99_us":%%d,"max_us":%%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def _lua(key: str, run: str, acks: Path) -> str:
    rng = random.Random(11)
    bodies = []
    for i in range(512):
        text = json.dumps(honest_event(rng, f"agent-{i % 8}"), separators=(",", ":"))
        assert "]==]" not in text
        bodies.append(f"[==[{text[1:]}]==]")
    return LUA % {"bodies": ", ".join(bodies), "run": run, "acks": acks, "key": key}


def run_wrk(backend: str, replicas: int, conc: int, seconds: float, tmp: Path) -> dict[str, Any]:
    """``replicas`` servers on one fresh database, each driven by its own ``wrk`` with
    ``conc / replicas`` connections, all at once."""
    url, drop = _fresh_db(backend, tmp)
    engine = make_engine(url)
    migrate(engine)
    key = create_key(engine, "bench")
    run = f"{backend}{replicas}-{uuid.uuid4().hex[:6]}"
    acks = tmp / run
    acks.mkdir()
    servers = [Server(url, tmp / f"serve-{run}-{i}.log") for i in range(replicas)]
    try:
        for srv in servers:
            srv.start(timeout=600)  # a loaded machine imports slowly

        async def warm_all() -> None:
            for srv in servers:
                h = {"Authorization": f"Bearer {key}"}
                async with httpx.AsyncClient(base_url=srv.url, headers=h, timeout=30) as c:
                    await _warm(c)

        asyncio.run(warm_all())
        scripts = []  # one per replica's wrk: its own idempotency keys and ack files
        for i in range(replicas):
            scripts.append(tmp / f"{run}-r{i}.lua")
            scripts[-1].write_text(_lua(key, f"{run}-r{i}", acks))
        per = max(1, conc // replicas)
        threads = 2 if replicas == 1 and per >= 2 else 1
        procs = [
            subprocess.Popen(
                [
                    "wrk",
                    f"-t{threads}",
                    f"-c{per}",
                    f"-d{seconds:g}s",
                    "--timeout",
                    "30s",
                    "-s",
                    str(script),
                    srv.url,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for srv, script in zip(servers, scripts, strict=True)
        ]
        outs = [p.communicate(timeout=seconds + 120)[0] for p in procs]
    finally:
        for srv in servers:
            srv.stop()
    stats = []
    for out in outs:
        line = next((ln for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
        if line is None:
            raise RuntimeError(f"wrk printed no summary: {out[-500:]}")
        stats.append(json.loads(line.removeprefix("WRKJSON ")))
    acked = [int(x) for f in acks.glob("acks-*.txt") for x in f.read_text().split()]
    from sqlalchemy import func, select

    from tripwire.runtime import store

    with engine.connect() as conn:
        stored = conn.execute(select(func.count()).select_from(store.events)).scalar_one()
        present = 0
        for i in range(0, len(acked), 5000):
            chunk = acked[i : i + 5000]
            present += conn.execute(
                select(func.count()).where(store.events.c.id.in_(chunk))
            ).scalar_one()
    engine.dispose()
    if drop is not None:
        drop()
    ok = sum(s["requests"] - s["non_2xx"] for s in stats)
    wall = max(s["duration_us"] for s in stats) / 1e6
    res = {
        "client": "wrk",
        "backend": backend,
        "replicas": replicas,
        "batch": 1,
        "concurrency": per * replicas,
        "seconds": round(wall, 2),
        "events": ok,
        "events_per_s": round(ok / wall, 1),
        "requests_per_s": round(ok / wall, 1),
        "p50_ms": round(max(s["p50_us"] for s in stats) / 1000, 2),
        "p99_ms": round(max(s["p99_us"] for s in stats) / 1000, 2),
        "max_ms": round(max(s["max_us"] for s in stats) / 1000, 2),
        "non_2xx": sum(s["non_2xx"] for s in stats),
        "socket_errors": sum(s["socket_errors"] for s in stats),
        "acked_ids_recorded": len(acked),
        "all_acked_stored": present == len(acked) == len(set(acked)),
        "stored_events": stored,
    }
    print(json.dumps(res), flush=True, file=sys.stderr)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    ap.add_argument(
        "--client",
        choices=["wrk", "python"],
        default="wrk",
        help="wrk (default): one event per POST from a C load generator; python: the httpx "
        "client (batches, --idempotency)",
    )
    ap.add_argument(
        "--replicas",
        default="1,2",
        help="with wrk: serve processes on one database, comma-separated (SQLite: 1 only)",
    )
    ap.add_argument("--json", action="store_true", help="print the results as one JSON document")
    ap.add_argument(
        "--warm-timeout",
        type=float,
        default=120.0,
        help="seconds the warm-up may wait for drift calibration (raise it on a loaded machine)",
    )
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
    WARM_TIMEOUT_S[0] = a.warm_timeout
    backends = ["sqlite", "postgres"] if a.backend == "both" else [a.backend]
    batches = [int(x) for x in a.batch.split(",")]
    try:
        replicas = sorted({int(x) for x in a.replicas.split(",")})
    except ValueError:
        ap.error(f"--replicas {a.replicas!r}: comma-separated counts, e.g. 1,2")
    if not replicas or replicas[0] < 1:
        ap.error("--replicas: counts of at least 1")
    if a.client == "wrk" and shutil.which("wrk") is None:
        print("error: wrk is not installed (Debian: apt-get install -y wrk)", file=sys.stderr)
        sys.exit(2)
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for b in backends:
            if a.client == "python":
                results += run_backend(
                    b, batches, a.concurrency, a.seconds, a.max_requests, Path(tmp), a.idempotency
                )
                continue
            for n in replicas:
                if b == "sqlite" and n > 1:
                    continue  # SQLite takes one writer process (a second serve is refused)
                results.append(run_wrk(b, n, a.concurrency, a.seconds, Path(tmp)))
    ratio = None
    pg = {r.get("replicas"): r for r in results if r["backend"] == "postgres" and "replicas" in r}
    if 1 in pg and 2 in pg:
        ratio = round(pg[2]["events_per_s"] / pg[1]["events_per_s"], 2)
    meta = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": list(os.getloadavg()),
        "replicas_2_vs_1_postgres": ratio,
    }
    if a.json:
        print(json.dumps({"results": results, **meta}, indent=2))
    else:
        print(
            f"\n{'client':6} {'backend':9} {'repl':>4} {'batch':>5} {'conns':>5} {'events/s':>9} "
            f"{'p50 ms':>7} {'p99 ms':>7}"
        )
        for r in results:
            print(
                f"{r['client']:6} {r['backend']:9} {r.get('replicas', 1):>4} {r['batch']:>5} "
                f"{r['concurrency']:>5} {r['events_per_s']:>9} {r['p50_ms']:>7} {r['p99_ms']:>7}"
            )
        if ratio is not None:
            print(f"PostgreSQL, 2 replicas vs 1: {ratio}x events/s")
        print(
            "target on 2 cores: single events >= 3000 events/s with p99 < 50 ms at 16 "
            f"connections; cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f}"
        )
    if a.out:
        from tripwire._io import write_json

        write_json(a.out, {"results": results, **meta})


if __name__ == "__main__":
    main()
