"""Issue 11, findings 2 and 6: values one backend cannot store are refused (422, one line naming
the field) on both backends alike, a request the database refuses all the same fails alone (not
its commit group, not another tenant), and malformed or deeply nested bodies answer 4xx."""

from __future__ import annotations

import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tripwire.runtime import store
from tripwire.runtime.jsonsafe import text_problem, value_problem
from tripwire.runtime.keys import create_key

from .conftest import Api, migrated
from .server import Server

BAD_EVENTS: list[tuple[bytes, str]] = [
    (b'{"agent":"a","type":"message","content":"x\\u0000y"}', "content: contains a NUL"),
    (b'{"agent":"a\\u0000","type":"message"}', "agent: contains a NUL"),
    (b'{"agent":"a","type":"tool_call","tool":"t\\u0000"}', "tool: contains a NUL"),
    (b'{"agent":"a","type":"message","session":"\\u0000"}', "session: contains a NUL"),
    (b'{"agent":"a","type":"message","model":"m\\u0000"}', "model: contains a NUL"),
    (b'{"agent":"a","type":"message","arguments":{"x":NaN}}', "arguments: x is NaN"),
    (b'{"agent":"a","type":"message","arguments":{"x":Infinity}}', "x is Infinity"),
    (b'{"agent":"a","type":"message","arguments":{"x":-Infinity}}', "x is -Infinity"),
    (b'{"agent":"a","type":"message","arguments":{"x":[1,{"y":1e999}]}}', "x[1].y is Infinity"),
    (b'{"agent":"a","type":"message","arguments":{"x":{"k\\u0000":1}}}', "the key x.k\\x00"),
    (b'{"agent":"a","type":"message","arguments":{"x":["\\u0000"]}}', "x[0] contains a NUL"),
    (
        b'{"events":[{"agent":"a","type":"message"},{"agent":"b","type":"message",'
        b'"arguments":{"v":NaN}}]}',
        "events.1.arguments: v is NaN",
    ),
    (b'{"agent":"a","type":"message","content":"\\ud800"}', "not valid JSON"),
]


def test_unstorable_values_answer_422_naming_the_field(api: Api) -> None:
    for body, named in BAD_EVENTS:
        r = api.post("/v1/events", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 422, (body, r.text)
        err = r.json()["error"]
        assert named in err and "\n" not in err, (body, err)
    with api.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(store.events)).scalar() == 0
    assert api.post("/v1/events", json={"agent": "a", "type": "message"}).status_code == 200


def test_the_rules_hold_on_every_route_into_the_store(api: Api) -> None:
    """OTLP spans are made storable, not refused (no span an agent shaped goes unmonitored)."""
    attrs = [
        {"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
        {"key": "gen_ai.tool.name", "value": {"stringValue": "ba\u0000sh"}},
        {"key": "gen_ai.tool.call.arguments", "value": {"stringValue": '{"n": 1e999}'}},
        {"key": "gen_ai.tool.call.result", "value": {"stringValue": "out\u0000put"}},
        {"key": "gen_ai.agent.name", "value": {"stringValue": "ag\u0000ent"}},
    ]
    nan = [
        {"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
        {"key": "gen_ai.tool.name", "value": {"stringValue": "calc"}},
        {
            "key": "gen_ai.tool.call.arguments",
            "value": {"kvlistValue": {"values": [{"key": "x", "value": {"doubleValue": "NaN"}}]}},
        },
    ]
    spans = [{"name": "t", "attributes": attrs}, {"name": "n", "attributes": nan}]
    body = {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}
    r = api.post("/v1/traces", json=body)
    assert r.status_code == 200, r.text
    evs = api.get("/v1/events").json()["events"]
    assert [(e["agent"], e["tool"], e["content"]) for e in evs] == [
        ("ag\ufffdent", "ba\ufffdsh", "out\ufffdput"),
        ("unknown", "calc", None),
    ]
    assert evs[0]["arguments"] == {"input": '{"n": Infinity}'}
    assert evs[1]["arguments"] == {"input": '{"x": NaN}'}


def _hammer(url: str, key: str, bodies: list[bytes], out: Counter[int], n: int) -> None:
    h = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    with httpx.Client(base_url=url, headers=h, timeout=30) as c:
        for i in range(n):
            out[c.post("/v1/events", content=bodies[i % len(bodies)]).status_code] += 1


def test_one_tenants_unstorable_values_never_fail_another_tenants_writes(
    db_url: str, tmp_path: Path
) -> None:
    """Concurrent requests share commits: the poisoned tenant gets 422s, the clean one 200s."""
    engine = migrated(db_url)
    bad_key, good_key = create_key(engine, "poison"), create_key(engine, "clean")
    srv = Server(db_url, tmp_path / "server.log").start()
    poison = [b for b, _ in BAD_EVENTS[:11]]
    clean = [
        json.dumps(
            {"events": [{"agent": "c", "type": "message", "content": f"ok {i}"}] * 3}
        ).encode()
        for i in range(5)
    ]
    bad: Counter[int] = Counter()
    good: Counter[int] = Counter()
    threads = [
        threading.Thread(target=_hammer, args=(srv.url, bad_key, poison, bad, 40)) for _ in range(3)
    ] + [
        threading.Thread(target=_hammer, args=(srv.url, good_key, clean, good, 40))
        for _ in range(3)
    ]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        srv.stop()
    assert good == Counter({200: 120}) and bad == Counter({422: 120})
    with engine.connect() as conn:
        n = conn.execute(select(func.count()).select_from(store.events)).scalar()
    assert n == 360
    engine.dispose()


DEEP = 100_000


@pytest.mark.parametrize(
    ("path", "body", "ctype", "status", "says"),
    [
        (
            "/v1/events",
            b'{"agent":"a","type":"message","arguments":{"x":' + b"[" * DEEP + b"]" * DEEP + b"}}",
            "application/json",
            422,
            "nests deeper than 200",
        ),
        ("/v1/events", b"[" * DEEP + b"]" * DEEP, "application/json", 422, "nests deeper"),
        (
            "/v1/traces",
            b'{"resourceSpans":' + b"[" * DEEP + b"]" * DEEP + b"}",
            "application/json",
            400,
            "nested deeper than 200",
        ),
        (
            "/v1/traces",
            b'{"resourceSpans":[{"scopeSpans":[{"spans":5}]}]}',
            "application/json",
            400,
            "repeated field spans",
        ),
        (
            "/v1/traces",
            b'{"resourceSpans":[{"scopeSpans":5}]}',
            "application/json",
            400,
            "scopeSpans",
        ),
        ("/v1/traces", b'{"resourceSpans":5}', "application/json", 400, "resourceSpans"),
        ("/v1/traces", b'{"resourceSpans":[{"resource":5}]}', "application/json", 400, "resource"),
        (
            "/v1/traces",
            b'{"resourceSpans":[{"scopeSpans":[{"spans":["x", 3]}]}]}',
            "application/json",
            400,
            "spans",
        ),
        (
            "/v1/traces",
            b'{"resourceSpans":[]}' + b" NaN",
            "application/json",
            400,
            "not valid JSON",
        ),
    ],
)
def test_malformed_and_deeply_nested_bodies_answer_4xx_in_one_line(
    sqlite_api: Api, path: str, body: bytes, ctype: str, status: int, says: str
) -> None:
    r = sqlite_api.post(path, content=body, headers={"content-type": ctype})
    assert r.status_code == status, r.text
    assert says in r.json()["error"] and "\n" not in r.json()["error"]


def test_otlp_attribute_json_nested_too_deeply_is_kept_as_text(sqlite_api: Api) -> None:
    deep = "[" * DEEP + "]" * DEEP
    attrs = [
        {"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
        {"key": "gen_ai.tool.name", "value": {"stringValue": "bash"}},
        {"key": "gen_ai.tool.call.arguments", "value": {"stringValue": deep[:60_000]}},
    ]
    chat = [
        {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
        {"key": "gen_ai.output.messages", "value": {"stringValue": deep[:60_000]}},
    ]
    spans = [{"name": "t", "attributes": attrs}, {"name": "c", "attributes": chat}]
    r = sqlite_api.post("/v1/traces", json={"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]})
    assert r.status_code == 200, r.text
    evs = sqlite_api.get("/v1/events").json()["events"]
    assert evs[0]["arguments"] == {"input": deep[:60_000]}
    assert evs[1]["content"] == deep[:60_000]


_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),  # control characters (NUL) and lone surrogates included
    st.sampled_from(["\x00", "a\x00b", "\ud800", "é"]),
)
_json = st.recursive(
    _leaves,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=24,
)


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(arguments=st.dictionaries(st.text(max_size=6), _json, max_size=4), content=_leaves)
def test_any_json_is_stored_exactly_or_refused_with_422(
    api: Api, arguments: dict[str, Any], content: Any
) -> None:
    """Property: on both backends, an event is either refused with 422 (exactly when some value in
    it is one a backend cannot store) or stored and read back unchanged. Never a 5xx."""
    text = content if isinstance(content, str) else None
    body = json.dumps({"agent": "p", "type": "message", "content": text, "arguments": arguments})
    r = api.post("/v1/events", content=body, headers={"content-type": "application/json"})
    unstorable = value_problem(arguments) or (text is not None and text_problem(text))
    assert r.status_code == (422 if unstorable else 200), (r.status_code, r.text, unstorable)
    event(str(r.status_code))
    if r.status_code == 200:
        eid = r.json()["events"][0]["id"]
        got = api.get("/v1/events", params={"after_id": eid - 1, "limit": 1}).json()["events"][0]
        assert got["id"] == eid and got["arguments"] == arguments and got["content"] == text
