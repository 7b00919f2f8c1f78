"""What a killed or stalled server must not leave behind: after ``kill -9`` of ``tripwire serve``
its calibration worker and the multiprocessing resource tracker exit too (no orphans using CPU);
a client that sends headers and half a body gets 408 and a closed connection, not a socket held
open forever."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from tripwire.runtime.api.limits import BodyLimit
from tripwire.runtime.keys import create_key

from .conftest import migrated
from .server import Server


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _calibrated(url: str, h: dict[str, str]) -> bool:
    r = httpx.get(f"{url}/v1/drift", headers=h, params={"agent": "a"})
    return bool(r.json()["detectors"])


def test_children_die_with_a_killed_server(sqlite_url: str, tmp_path: Path) -> None:
    engine = migrated(sqlite_url)
    key = create_key(engine, "t")
    engine.dispose()
    srv = Server(sqlite_url, tmp_path / "server.log", "--drift-baseline", "30").start()
    pids: list[int] = []
    try:
        assert srv.proc is not None
        h = {"Authorization": f"Bearer {key}"}
        # The 30th event starts the agent's calibration in the worker process; it is done (the
        # worker is up and has worked) once its detector settings are stored.
        deadline, i = time.time() + 90, 0
        while not _calibrated(srv.url, h):
            events = [{"agent": "a", "type": "message", "content": f"m{i + j}"} for j in range(10)]
            r = httpx.post(f"{srv.url}/v1/events", headers=h, json={"events": events})
            assert r.is_success and time.time() < deadline, "drift never calibrated"
            i += 10
            time.sleep(0.2)
        kids = psutil.Process(srv.proc.pid).children(recursive=True)
        lines = [" ".join(k.cmdline()) for k in kids]
        assert any("resource_tracker" in c for c in lines), lines
        assert any("spawn_main" in c for c in lines), lines
        pids[:] = [k.pid for k in kids]
        srv.kill9()
        deadline = time.time() + 5
        while any(_alive(p) for p in pids) and time.time() < deadline:
            time.sleep(0.1)
        left = [" ".join(psutil.Process(p).cmdline()) for p in pids if _alive(p)]
        assert left == [], f"orphans after kill -9: {left}"
    finally:
        srv.stop()
        for p in pids:  # what the old code left behind: this test's processes, ended
            if _alive(p):
                psutil.Process(p).kill()


def _read_until_closed(sock: socket.socket, limit: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection (or ``limit`` seconds)."""
    got, start = b"", time.monotonic()
    sock.settimeout(0.2)
    while time.monotonic() - start < limit:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        if not chunk:
            return got, time.monotonic() - start
        got += chunk
    raise AssertionError(f"connection still open after {limit} s; got {got[:200]!r}")


def test_a_stalled_body_gets_408_and_a_closed_connection(sqlite_url: str, tmp_path: Path) -> None:
    migrated(sqlite_url).dispose()
    srv = Server(sqlite_url, tmp_path / "server.log", "--body-timeout", "1").start()
    try:
        with socket.create_connection(("127.0.0.1", srv.port)) as sock:
            sock.sendall(
                b"POST /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                b'{"agent": "a", "type": "mess'
            )
            got, took = _read_until_closed(sock, limit=6)
        assert got.startswith(b"HTTP/1.1 408"), got[:200]
        assert b"not received within 1 s" in got and took < 5
        assert httpx.get(f"{srv.url}/healthz").status_code == 200  # still serving
    finally:
        srv.stop()


def test_body_limit_times_out_a_receive_that_never_completes() -> None:
    """The middleware alone, on the default app path: a body that never ends is 408."""
    sent: list[dict[str, Any]] = []
    called = False

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal called
        called = True

    async def receive() -> dict[str, Any]:
        if not sent and not getattr(receive, "once", False):
            receive.once = True  # type: ignore[attr-defined]
            return {"type": "http.request", "body": b"{", "more_body": True}
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    scope = {"type": "http", "method": "POST", "headers": []}
    asyncio.run(BodyLimit(app, timeout=0.2)(scope, receive, send))
    assert not called and sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]
