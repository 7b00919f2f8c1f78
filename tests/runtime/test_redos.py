"""A request built to make the rules backtrack does not freeze the service (issue 11, finding 1):
the real ``tripwire serve`` keeps answering ``/healthz`` and other tenants while it scores a 1 MiB
batch of adversarial 64,000-character events, and the batch itself is scored and stored."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tripwire.runtime.keys import create_key

from .conftest import migrated
from .server import Server


def test_healthz_answers_while_an_adversarial_batch_is_scored(
    sqlite_url: str, tmp_path: Path
) -> None:
    engine = migrated(sqlite_url)
    attacker = {"Authorization": f"Bearer {create_key(engine, 'attacker')}"}
    other = {"Authorization": f"Bearer {create_key(engine, 'other')}"}
    engine.dispose()
    # '>' x 64,000 made the old test-tamper-shell pattern backtrack for minutes per event;
    # 16 of them fill the 1 MiB body limit.
    bad = {"agent": "x", "type": "tool_call", "tool": "write_file", "content": ">" * 64_000}
    body = {"events": [bad] * 16}
    srv = Server(sqlite_url, tmp_path / "server.log").start()
    answer: dict[str, Any] = {}

    def attack() -> None:
        try:
            answer["r"] = httpx.post(
                f"{srv.url}/v1/events", json=body, headers=attacker, timeout=120
            )
        except httpx.HTTPError as exc:
            answer["error"] = exc

    try:
        t = threading.Thread(target=attack)
        t.start()
        polls = []
        while t.is_alive() or not polls:
            t0 = time.perf_counter()
            h = httpx.get(f"{srv.url}/healthz", timeout=10)
            assert h.status_code == 200, h.text
            polls.append(time.perf_counter() - t0)
            ok = httpx.post(
                f"{srv.url}/v1/events",
                json={"agent": "y", "type": "message", "content": "weekly report"},
                headers=other,
                timeout=10,
            )
            assert ok.status_code == 200, ok.text
            time.sleep(0.05)
        t.join(timeout=120)
        assert "error" not in answer, answer
        r = answer["r"]
        assert r.status_code == 200, r.text
        assert len(r.json()["events"]) == 16
        assert max(polls) < 5.0, polls
    finally:
        srv.stop()
