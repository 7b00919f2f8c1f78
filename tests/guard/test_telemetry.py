"""The guard's telemetry: GenAI spans with the detectors' verdicts, into a real ``tripwire serve``.

The serve side is the real app on SQLite under uvicorn on a loopback port, reached by the SDK's
own OTLP/HTTP exporter with a key made by ``create_key``; the guard is the tiny random Llama with
the planted detector calibrated as in ``test_engine``.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from typer.testing import CliRunner

from tests.guard.conftest import LAYER, PROMPTS, honest_traffic, user
from tests.runtime.server import free_port
from tripwire.cli import app as cli
from tripwire.guard import Guard, GuardDetector, PrefillThresholds, load_detector
from tripwire.guard.calibrate import calibrate
from tripwire.guard.rules import DecodeRule
from tripwire.guard.server import create_app as guard_app
from tripwire.guard.telemetry import EVALUATION_EVENT, Telemetry, traces_url
from tripwire.runtime.app import create_app as serve_app
from tripwire.runtime.keys import create_key
from tripwire.runtime.pipeline import RuntimeConfig
from tripwire.runtime.store import make_engine, migrate

EVAL = "gen_ai.evaluation."


@pytest.fixture(scope="module")
def gated(llama: Any, planted: Path) -> GuardDetector:
    det = load_detector(f"{planted}:{LAYER}")
    return calibrate(llama, det, honest_traffic(40), budget=0.05, max_tokens=4).detector


@pytest.fixture
def memory(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Telemetry, InMemorySpanExporter]]:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    exporter = InMemorySpanExporter()
    tel = Telemetry(exporter)
    yield tel, exporter
    tel.shutdown()


def _evals(span: Any) -> list[dict[str, Any]]:
    return [dict(e.attributes) for e in span.events if e.name == EVALUATION_EVENT]


def test_a_span_per_request_with_genai_attributes_and_every_verdict(
    llama: Any, gated: GuardDetector, memory: tuple[Telemetry, InMemorySpanExporter]
) -> None:
    tel, exporter = memory
    guard = Guard(llama, [gated], name="tiny", telemetry=tel)
    allowed = guard.chat(user(PROMPTS[201]), max_tokens=3, temperature=0, seed=7)
    blocked = guard.chat(user(PROMPTS[200], trigger=True), n=2, max_tokens=4, temperature=0)
    assert tel.flush()
    one, two = exporter.get_finished_spans()

    a = dict(one.attributes)
    assert one.name == "chat tiny" and one.resource.attributes["service.name"] == "tripwire-guard"
    assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "tripwire"
    assert a["gen_ai.request.model"] == a["gen_ai.response.model"] == "tiny"
    assert a["gen_ai.response.id"] == allowed["id"]
    assert (a["gen_ai.request.max_tokens"], a["gen_ai.request.temperature"]) == (3, 0.0)
    assert a["gen_ai.request.seed"] == 7 and "gen_ai.request.choice.count" not in a
    assert a["gen_ai.response.finish_reasons"] == ("length",)
    assert a["gen_ai.usage.input_tokens"] == allowed["usage"]["prompt_tokens"]
    assert a["gen_ai.usage.output_tokens"] == 3 and a["tripwire.guard.action"] == "allow"
    assert json.loads(a["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": PROMPTS[201]}]}
    ]
    text = allowed["choices"][0]["message"]["content"]
    part = {"type": "text", "content": text}
    assert json.loads(a["gen_ai.output.messages"]) == [
        {"role": "assistant", "parts": [part], "finish_reason": "length"}
    ]
    assert one.start_time < one.end_time
    prefill, decode = _evals(one)
    assert prefill == {
        f"{EVAL}name": "planted",
        f"{EVAL}score.value": allowed["tripwire"]["prefill"]["scores"]["planted"],
        f"{EVAL}score.label": "allow",
        f"{EVAL}explanation": "under the flag and block thresholds",
        "gen_ai.response.id": allowed["id"],
        "tripwire.guard.stage": "prefill",
    }
    assert decode[f"{EVAL}name"] == "planted.decode" and decode["tripwire.guard.choice"] == 0
    assert decode[f"{EVAL}score.label"] == "allow" and decode["tripwire.guard.stage"] == "decode"

    b = dict(two.attributes)
    assert b["tripwire.guard.action"] == "block" and b["gen_ai.request.choice.count"] == 2
    assert b["gen_ai.response.finish_reasons"] == ("content_filter", "content_filter")
    assert b["gen_ai.usage.output_tokens"] == 0
    (gate,) = _evals(two)  # blocked before the first token: no decode verdicts
    assert gate[f"{EVAL}score.label"] == "block"
    assert gate[f"{EVAL}score.value"] == blocked["tripwire"]["prefill"]["scores"]["planted"]
    assert gate[f"{EVAL}explanation"] == blocked["tripwire"]["prefill"]["reasons"][0]
    out = json.loads(b["gen_ai.output.messages"])
    assert [m["parts"][0]["content"] for m in out] == [
        c["message"]["content"] for c in blocked["choices"]
    ]


def test_decode_cuts_per_choice_streams_the_server_and_uncalibrated(
    llama: Any, gated: GuardDetector, memory: tuple[Telemetry, InMemorySpanExporter]
) -> None:
    tel, exporter = memory
    # A rule whose level is below zero alarms at the first generated token of every choice.
    cutting = dataclasses.replace(
        gated,
        prefill=PrefillThresholds(block=1e9, flag=1e9),
        decode=DecodeRule("cusum", mean=0.0, std=1.0, level=-1.0),
    )
    guard = Guard(llama, [cutting], telemetry=tel)
    cut = guard.chat(user(PROMPTS[202]), n=2, max_tokens=4, temperature=0.8, seed=1)
    assert [c["finish_reason"] for c in cut["choices"]] == ["content_filter"] * 2
    stream = guard.stream(user(PROMPTS[203]), max_tokens=50, temperature=0)
    next(stream)
    stream.close()  # a client gone mid-way: its span still ends, marked
    bare = Guard(llama, [dataclasses.replace(gated, prefill=None, decode=None)], telemetry=tel)
    bare.chat(user(PROMPTS[204]), max_tokens=1, temperature=0)
    with TestClient(guard_app(guard)) as client:  # the server shares the hook
        r = client.post("/v1/chat/completions", json={"messages": user("Hi"), "max_tokens": 2})
        assert r.status_code == 200
    # The server's shutdown exported what was queued and closed the telemetry.
    spans = exporter.get_finished_spans()
    assert len(spans) == 4
    spans = (spans[0], spans[1], spans[3], spans[2])

    gate, *decodes = _evals(spans[0])
    assert gate[f"{EVAL}score.label"] == "allow"
    assert [d["tripwire.guard.choice"] for d in decodes] == [0, 1]
    for d in decodes:
        assert d[f"{EVAL}score.label"] == "block" and d[f"{EVAL}name"] == "planted.decode"
        assert d[f"{EVAL}explanation"].startswith("planted cusum ")
    assert spans[0].attributes["tripwire.guard.action"] == "block"

    assert spans[1].attributes["error.type"] == "cancelled"
    assert spans[1].status.status_code.name == "ERROR"
    assert spans[2].attributes["gen_ai.response.id"] == r.json()["id"]
    assert "error.type" not in spans[2].attributes
    (uncal,) = (e for e in _evals(spans[3]) if e["tripwire.guard.stage"] == "prefill")
    assert uncal[f"{EVAL}score.label"] == "allow"
    assert uncal[f"{EVAL}explanation"].startswith("not calibrated")


class _Serve:
    """``tripwire serve``'s app on SQLite under uvicorn in a thread, on a loopback port."""

    def __init__(self, db: Path) -> None:
        self.engine = make_engine(f"sqlite:///{db}")
        migrate(self.engine)
        self.key = create_key(self.engine, "guard-team")
        self.app = serve_app(self.engine, RuntimeConfig(drift_baseline=30))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.time() + 30
        while not self.server.started:
            assert time.time() < deadline, "serve did not start"
            time.sleep(0.02)

    def get(self, path: str, **params: Any) -> Any:
        h = {"Authorization": f"Bearer {self.key}"}
        r = httpx.get(f"{self.url}{path}", params=params, headers=h, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.engine.dispose()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[_Serve]:
    s = _Serve(tmp_path / "tw.db")
    yield s
    s.stop()


def test_guarded_requests_arrive_at_serve_as_events_drift_streams_and_a_block(
    llama: Any, gated: GuardDetector, serve: _Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "support-bot")
    tel = Telemetry.otlp(traces_url(serve.url), serve.key)
    guard = Guard(llama, [gated], telemetry=tel)
    scores = []
    for text in PROMPTS[100:134]:  # past the 30-event drift baseline
        answer = guard.chat(user(text), max_tokens=2, temperature=0)
        scores.append(answer["tripwire"]["prefill"]["scores"]["planted"])
    assert tel.flush()
    blocked = guard.chat(user(PROMPTS[210], trigger=True), max_tokens=2, temperature=0)
    assert blocked["tripwire"]["action"] == "block"
    tel.shutdown()
    assert not tel.exporter.failures

    events = serve.get("/v1/events", limit=100)["events"]
    assert len(events) == 35 and {e["agent"] for e in events} == {"support-bot"}
    first = events[0]
    assert first["source"] == "otlp" and first["type"] == "message" and first["model"]
    assert first["action"] == "allow"
    by = {v["monitor"]: v for v in first["verdicts"]}
    assert by["eval:planted"]["value"] == scores[0] and by["eval:planted"]["score"] == 0.0
    assert by["eval:planted"]["reasons"] == ["under the flag and block thresholds"]
    assert "eval:planted.decode" in by
    last = events[-1]
    assert (
        last["action"] == "block" and last["content"] == blocked["choices"][0]["message"]["content"]
    )
    assert last["evaluation"]["gen_ai.evaluation.score.label"] == "block"
    alerts = serve.get("/v1/alerts", kind="verdict")["alerts"]
    assert [(a["event_id"], a["monitor"], a["severity"]) for a in alerts] == [
        (last["id"], "eval:planted", "high")
    ]

    stream = serve.get("/v1/drift", agent="support-bot", feature="eval:planted", last=100)
    assert stream["values"][:34] == scores and len(stream["values"]) == 35
    # The live detectors watch the stream once the baseline's calibration (a worker process)
    # is installed, which happens with the agent's next event.
    pipeline = serve.app.state.service.pipelines[1]
    agent = pipeline.drift.agents["support-bot"]
    agent.pending.result(timeout=60)
    tel = Telemetry.otlp(traces_url(serve.url), serve.key)
    Guard(llama, [gated], telemetry=tel).chat(user(PROMPTS[140]), max_tokens=1, temperature=0)
    tel.shutdown()
    deadline = time.time() + 30
    while not (live := serve.get("/v1/drift", agent="support-bot", feature="eval:planted"))[
        "detectors"
    ]:
        assert time.time() < deadline, "drift settings never persisted"
        time.sleep(0.1)
    watched = {(d["feature"], d["detector"]) for d in live["detectors"]}
    assert {("eval:planted", "PageHinkley"), ("eval:planted", "ADWIN")} <= watched
    assert ("eval:planted.decode", "ADWIN") in watched
    assert "eval:planted/ADWIN" in live["live"]["state"]
    assert live["live"]["state"]["eval:planted/ADWIN"]["width"] > 0


def test_a_dead_collector_fails_no_request_and_says_so_once(
    llama: Any, gated: GuardDetector, capsys: pytest.CaptureFixture[str]
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1/traces"
    tel = Telemetry.otlp(dead, "tw_unused", timeout=0.5)
    guard = Guard(llama, [gated], telemetry=tel)
    plain = Guard(llama, [gated])
    msgs = user(PROMPTS[205])
    for i in range(2):
        answer = guard.chat(msgs, max_tokens=2, temperature=0)
        tel.flush(timeout_s=5)
        assert tel.exporter.failures == i + 1
    answer.pop("id"), answer.pop("created")
    same = plain.chat(msgs, max_tokens=2, temperature=0)
    same.pop("id"), same.pop("created")
    assert answer == same
    tel.shutdown()
    assert tel.exporter.failures == 2
    lines = [x for x in capsys.readouterr().err.splitlines() if x.startswith("tripwire guard")]
    assert lines == [
        f"tripwire guard: cannot export spans to {dead} (the collector did not accept them); "
        "answering on, spans are dropped until it is reachable"
    ]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--key", "tw_x"], "--key is the API key of the --watch service"),
        (["--watch", "http://127.0.0.1:8400"], "needs --key KEY"),
        (["--watch", "ftp://h", "--key", "k"], "is not an http(s)://HOST[:PORT] URL"),
        (["--watch", "http://h:port", "--key", "k"], "is not a URL"),
        (["--otlp-endpoint", "localhost:4318"], "is not an http(s)://HOST[:PORT] URL"),
        (
            ["--watch", "http://h", "--key", "k", "--otlp-endpoint", "http://c"],
            "not both",
        ),
    ],
)
def test_bad_telemetry_flags_are_one_line_exit_2_before_the_model_loads(
    args: list[str], says: str, tmp_path: Path
) -> None:
    missing = str(tmp_path / "no-such-model")  # loading it would be another error
    r = CliRunner().invoke(cli, ["guard", "--model", missing, *args])
    assert r.exit_code == 2, r.output
    assert says in r.stderr and r.stderr.count("\n") == 1 and r.stdout == "", r.stderr


def test_the_standard_endpoint_variable_is_honoured(monkeypatch: pytest.MonkeyPatch) -> None:
    from tripwire.cli.guard import _telemetry_target

    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    assert _telemetry_target(None, None, None) == ("http://collector:4318/v1/traces", None)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/custom")
    assert _telemetry_target(None, None, None) == ("http://c:4318/custom", None)
    assert _telemetry_target("https://tw.example/", "k", None) == (
        "https://tw.example/v1/traces",
        "k",
    )
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "nonsense")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    r = CliRunner().invoke(cli, ["guard", "--model", "/nonexistent"])
    assert r.exit_code == 2 and "OTEL_EXPORTER_OTLP_ENDPOINT 'nonsense'" in r.stderr
