"""The pure-ASGI fast path for ``POST /v1/events`` answers exactly what the FastAPI route
answers: the same sequence of requests, good and bad, against two fresh services (fast path on
and off) gets the same statuses, headers that matter and bodies; and the fast path really is
what answered the ordinary ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from tripwire.runtime import store
from tripwire.runtime.api import ingest
from tripwire.runtime.app import create_app
from tripwire.runtime.keys import create_key

from .conftest import migrated

EV = {"agent": "coder", "type": "tool_call", "tool": "bash", "arguments": {"cmd": "ls"}}


def _script(key: str) -> list[dict[str, Any]]:
    auth = {"Authorization": f"Bearer {key}"}
    return [
        {"json": EV, "headers": auth},  # the key is not cached yet: the route answers
        {"json": {**EV, "content": "second"}, "headers": auth},
        {"json": {"events": [EV, {**EV, "agent": "other"}, EV]}, "headers": auth},
        {"json": EV, "headers": {**auth, "Idempotency-Key": "step-1"}},
        {"json": EV, "headers": {**auth, "Idempotency-Key": "step-1"}},  # a retry: replayed
        {"json": {**EV, "idempotency_key": "own"}, "headers": auth},
        {"json": EV, "headers": {"Authorization": f"bearer  {key} "}},  # scheme any case
        {"content": b"{not json", "headers": auth},
        {"content": b"[1, 2]", "headers": auth},
        {"json": {"agent": "coder"}, "headers": auth},
        {"json": {**EV, "type": "nonsense"}, "headers": auth},
        {"json": {"events": []}, "headers": auth},
        {"json": EV, "headers": {**auth, "Idempotency-Key": "x" * 201}},
        {
            "json": EV,
            "headers": [("Authorization", f"Bearer {key}"), ("Idempotency-Key", b"caf\xe9")],
        },  # fmt: skip
        {"json": EV, "headers": {"Authorization": "Bearer tw_00000000_nope"}},
        {"json": EV, "headers": {"Authorization": f"Basic {key}"}},
        {"json": EV},
        {"content": b"x" * (1_048_576 + 1), "headers": auth},
    ]


def _answers(tmp: Path, fast: bool, monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], int]:
    engine = migrated(f"sqlite:///{tmp / ('fast.db' if fast else 'route.db')}")
    key = create_key(engine, "tenant-a")
    routed = [0]
    real = ingest.parse_events

    def counting(raw: bytes, idem: str | None) -> Any:
        routed[0] += 1
        return real(raw, idem)

    monkeypatch.setattr(ingest, "parse_events", counting)  # the route's calls only
    out = []
    with TestClient(create_app(engine, fast_ingest=fast)) as client:
        steps = _script(key)
        for step in steps:
            r = client.post("/v1/events", **step)
            out.append((r.status_code, r.headers.get("content-type"),
                        r.headers.get("www-authenticate"), r.json()))  # fmt: skip
        with engine.begin() as conn:
            conn.execute(update(store.api_keys).values(revoked=True))
        for _ in range(2):  # still cached: the commit refuses it, then the route does
            r = client.post("/v1/events", **steps[1])
            out.append((r.status_code, r.headers.get("www-authenticate"), r.json()))
    engine.dispose()
    return out, routed[0]


def test_the_fast_path_answers_what_the_route_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast, routed_fast = _answers(tmp_path, True, monkeypatch)
    slow, routed_slow = _answers(tmp_path, False, monkeypatch)
    assert fast == slow
    statuses = [a[0] for a in fast]
    assert statuses == [200] * 7 + [422] * 7 + [401] * 3 + [413] + [401] * 2
    assert fast[4][3] == fast[3][3]  # the retry answered from the store
    assert fast[7][3] == {"error": "body is not valid JSON"}
    assert fast[-2][1] == "Bearer" and fast[-2][2] == {"error": "invalid or revoked API key"}
    # Without the fast path the route parsed every body past its key and header checks (7 good,
    # 5 bad, 1 refused at commit); with it, only the first (its key not cached yet) and the 5
    # bad bodies, handed on to be answered there.
    assert routed_slow == 7 + 5 + 1
    assert routed_fast == 1 + 5
