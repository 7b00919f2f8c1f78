"""Every route of the running service (proxy mode on, against a scripted upstream), on SQLite and
on PostgreSQL: schemathesis-generated requests (valid and invalid, bounded in count), then
hand-written hostile ones (deep nesting, NUL, non-finite numbers as raw JSON text, huge strings,
wrong content types, hostile path and query values). None may get a 5xx, and ``/healthz``
answers throughout."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tripwire.runtime.api.limits import MAX_BODY_BYTES
from tripwire.runtime.keys import create_key

from .conftest import migrated
from .server import Server
from .upstream import Upstream

EXAMPLES = 30  # per operation and backend: the default suite runs both
DEEP = 100_000

EVENT = b'{"agent":"a","type":"tool_call","tool":"t","arguments":{"x":%s}}'
OTLP = (
    b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"%s","spanId":"01","attributes":'
    b'[{"key":"gen_ai.operation.name","value":{"stringValue":"execute_tool"}},'
    b'{"key":"gen_ai.tool.call.arguments","value":%s}]}]}]}]}'
)
CHAT = b'{"model":"m","messages":[{"role":"user","content":%s}],"n":%s}'
BODIES: list[bytes] = [
    b"[" * DEEP + b"]" * DEEP,
    b'{"a":' * 20_000 + b"1" + b"}" * 20_000,
    EVENT % (b"[" * 190 + b"]" * 190),
    EVENT % b'"\\u0000"',
    b'{"agent":"\\u0000","type":"message","content":"x\\u0000"}',
    b'{"agent":"a","type":"message","session":"\\ud800"}',
    EVENT % b"NaN",
    EVENT % b"Infinity",
    EVENT % b"-Infinity",
    EVENT % b"1e999",
    EVENT % (b"1" + b"0" * 5000),
    EVENT % b'{"k\\u0000":1}',
    b'{"events":[' + b",".join([EVENT % b"NaN"] * 3) + b"]}",
    b'{"agent":"a","type":"message","content":"' + b"x" * 900_000 + b'"}',
    b'{"agent":"' + b"a" * 900_000 + b'","type":"message"}',
    b'{"agent":"a","type":"message","arguments":{"' + b"k" * 500_000 + b'":1}}',
    b"x" * 1_100_000,
    OTLP % (b"\\u0000", b'{"stringValue":"\\u0000"}'),
    OTLP % (b"ab", b'{"doubleValue":"NaN"}'),
    OTLP % (b"ab", b'{"stringValue":"' + b"[" * 60_000 + b'"}'),
    OTLP % (b"ab", b'{"kvlistValue":{"values":' + b"[" * 1000 + b"]" * 1000 + b"}}"),
    b'{"resourceSpans":[{"scopeSpans":[{"spans":5}]}]}',
    b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"attributes":{"a":1}}]}]}]}',
    CHAT % (b'"hi\\u0000"', b"1"),
    CHAT % (b"NaN", b"1e999"),
    CHAT % (b"[" * 190 + b"]" * 190, b"1"),
    CHAT % (b'"' + b"x" * 900_000 + b'"', b"1"),
    b'{"status":"confirmed","note":"\\u0000"}',
    b'{"status":"confirmed","note":' + b"[" * DEEP + b"]" * DEEP + b"}",
    b"\xff\xfe\x00\x00",
    b"",
]
CTYPES = [
    "application/json",
    "text/plain",
    "application/x-protobuf",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
]
QUERY_VALUES = [
    "\x00",
    "a\x00b",
    "x" * 10_000,
    "NaN",
    "Infinity",
    "1e999",
    "-1",
    str(2**31),
    str(2**62),
    str(2**70),
    "🙂",
]
PATH_VALUES = ["%00", "NaN", "1e999", str(2**31), str(2**62), "x" * 4000, "-1", "%F0%9F%99%82"]


class Healthz:
    """Polls ``/healthz`` in a thread: every answer must come, 200, within the timeout."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.failures: list[str] = []
        self.polls, self.worst = 0, 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=15) as c:
            while not self.stop.wait(0.25):
                t = time.perf_counter()
                try:
                    status = c.get(f"{self.url}/healthz").status_code
                except httpx.HTTPError as exc:
                    self.failures.append(type(exc).__name__)
                    continue
                self.worst = max(self.worst, time.perf_counter() - t)
                self.polls += 1
                if status != 200:
                    self.failures.append(str(status))

    def __enter__(self) -> Healthz:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=20)


@contextmanager
def _server(db_url: str, tmp_path: Path, upstream: Upstream) -> Iterator[tuple[Server, str]]:
    engine = migrated(db_url)
    key = create_key(engine, "fuzz")
    srv = Server(db_url, tmp_path / "server.log", "--upstream", upstream.url).start()
    try:
        yield srv, key
    finally:
        srv.stop()
        engine.dispose()


def _fill(path: str, value: str) -> str:
    return path.replace("{name}", value).replace("{item_id}", value)


def _hostile(
    url: str, key: str, ops: list[tuple[str, str, list[str]]], out: Counter[int]
) -> list[str]:
    """The hand-written cases, on every operation; the 5xx answers, described."""
    bad: list[str] = []
    h = {"Authorization": f"Bearer {key}"}

    def call(c: httpx.Client, method: str, path: str, **kw: Any) -> None:
        try:
            r = c.request(method, path, **kw)
        except httpx.TransportError as exc:
            # A body over the limit is refused (413) before it is read; the server then closes
            # the connection, which the client may see before it reads the answer.
            if len(kw.get("content", b"")) > MAX_BODY_BYTES:
                out[413] += 1
                return
            bad.append(f"{method} {path[:80]} {str(kw)[:80]} -> {type(exc).__name__}")
            return
        out[r.status_code] += 1
        if r.status_code >= 500:
            bad.append(f"{method} {path[:80]} {str(kw)[:80]} -> {r.status_code}: {r.text[:200]}")

    with httpx.Client(base_url=url, headers=h, timeout=60) as c:
        for method, path, params in ops:
            for value in PATH_VALUES if "{" in path else []:
                call(c, method, _fill(path, value), json={"status": "confirmed"})
            p = _fill(path, "1" if "{item_id}" in path else "rules")
            for q in params:
                for v in QUERY_VALUES:
                    call(c, method, p, params={q: v})
            if method == "POST":
                for body in BODIES:
                    call(c, method, p, content=body, headers={"content-type": CTYPES[0]})
                for ctype in CTYPES[1:]:
                    call(c, method, p, content=BODIES[3], headers={"content-type": ctype})
                call(c, method, p, data={"key": "\x00", "x": "y" * 10_000})
    return bad


def _schemathesis(url: str, key: str, ops: list[Any], statuses: Counter[int]) -> list[str]:
    failures: list[str] = []
    for op in ops:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(
            case=st.one_of(
                op.as_strategy(schemathesis.GenerationMode.POSITIVE),
                op.as_strategy(schemathesis.GenerationMode.NEGATIVE),
            ),
            authed=st.booleans(),
        )
        def run(case: schemathesis.Case, authed: bool) -> None:
            headers = {"Authorization": f"Bearer {key}"} if authed else {}
            resp = case.call(base_url=url, headers=headers, timeout=30)
            statuses[resp.status_code] += 1
            if resp.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {resp.status_code}: {resp.text[:200]}"
                )

        run()
    return failures


def test_no_operation_answers_5xx(db_url: str, tmp_path: Path) -> None:
    with Upstream() as upstream, _server(db_url, tmp_path, upstream) as (srv, key):
        schema = schemathesis.openapi.from_url(f"{srv.url}/openapi.json")
        ops = [r.ok() for r in schema.get_all_operations()]
        paths = {f"{op.method.upper()} {op.path}" for op in ops}
        assert {"POST /v1/events", "POST /v1/traces", "POST /v1/chat/completions"} <= paths
        every = [(op.method.upper(), op.path, [p.name for p in op.query]) for op in ops] + [
            ("GET", "/", ["agent"]),
            ("POST", "/login", []),
        ]
        fuzzed: Counter[int] = Counter()
        hostile: Counter[int] = Counter()
        with Healthz(srv.url) as health:
            t0 = time.perf_counter()
            failures = _schemathesis(srv.url, key, ops, fuzzed)
            t1 = time.perf_counter()
            failures += _hostile(srv.url, key, every, hostile)
            t2 = time.perf_counter()
        print(f"fuzz statuses: {dict(fuzzed)} in {t1 - t0:.1f} s")
        print(f"hostile: {dict(hostile)} in {t2 - t1:.1f} s")
        print(f"healthz: {health.polls} polls, worst {health.worst:.2f} s")
        assert failures == [], "\n".join(failures)
        assert health.failures == [] and health.polls >= 10
        # The fuzz got past auth and validation for real, and was also refused for real.
        assert fuzzed[200] >= 20 and fuzzed[401] >= 30, fuzzed
        assert fuzzed[422] + fuzzed[400] >= 20, fuzzed
        assert hostile[400] + hostile[422] >= 200 and hostile[413] >= 5, hostile
        assert "Traceback" not in (tmp_path / "server.log").read_text()
