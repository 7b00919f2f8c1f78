"""A real ``tripwire guard`` process on loopback, driven by the official ``openai`` client."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest

from tests.cli._subprocess import env
from tests.guard.conftest import LAYER, PROMPTS, TOOL_CALL, TOOLS, honest_traffic, user
from tests.runtime.server import free_port
from tripwire.guard.detectors import sidecar_path
from tripwire.whitebox import DiffMeans

CLI = [sys.executable, "-m", "tripwire.cli", "guard"]


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=env(), timeout=timeout, check=False
    )


class GuardServer:
    def __init__(self, log: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [*CLI, *args, "--port", str(self.port)]
        self.log = log
        self.proc = subprocess.Popen(
            cmd, stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env()
        )
        deadline = time.time() + 300
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"guard exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("guard did not come up")

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", max_retries=0)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=20)


def _save(lm: Any, folder: Path) -> Path:
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def llama_dir(llama: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save(llama, tmp_path_factory.mktemp("llama"))


@pytest.fixture(scope="module")
def gated_server(
    llama_dir: Path, planted: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GuardServer]:
    """The planted detector, calibrated by the real CLI, guarding the tiny Llama."""
    work = tmp_path_factory.mktemp("gated")
    for suffix in (".json", ".safetensors"):
        shutil.copy(planted.with_suffix(suffix), work / f"planted{suffix}")
    traffic = work / "honest.jsonl"
    traffic.write_text("".join(json.dumps({"messages": m}) + "\n" for m in honest_traffic(40)))
    det = work / "planted"
    done = _cli(
        "calibrate", "--model", str(llama_dir), "--detector", f"{det}:{LAYER}",
        "--traffic", str(traffic), "--budget", "0.05", "--max-tokens", "4", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["prefill"]["budget"] == 0.05
    assert sidecar_path(det).is_file()
    server = GuardServer(
        work / "log.txt", "--model", str(llama_dir), "--detector", str(det), "--name", "tiny",
        "--batch-window-ms", "300", "--max-body-bytes", "100000", "--max-tokens", "4",
    )  # fmt: skip
    yield server
    server.stop()


@pytest.fixture(scope="module")
def taught_server(taught: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GuardServer]:
    """The taught model (answers TOOL_CALL) with an uncalibrated probe reporting scores."""
    work = tmp_path_factory.mktemp("taught")
    folder = _save(taught, work / "model")
    rng = np.random.default_rng(0)
    DiffMeans().fit(rng.standard_normal((8, taught.d_model)), [0, 1] * 4).save(work / "probe")
    server = GuardServer(
        work / "log.txt", "--model", str(folder), "--detector", f"{work / 'probe'}:{LAYER}",
        "--allow-uncalibrated", "--name", "taught",
    )  # fmt: skip
    yield server
    server.stop()


def test_plain_streaming_and_n2_through_the_openai_client(taught_server: GuardServer) -> None:
    client = taught_server.client()
    msgs: Any = user(PROMPTS[70])
    raw = client.chat.completions.with_raw_response.create(
        model="taught", messages=msgs, temperature=0, max_tokens=60
    )
    assert raw.headers["x-tripwire-action"] == "allow"
    done = raw.parse()
    assert done.choices[0].message.content == TOOL_CALL  # no tools declared: plain content
    assert done.choices[0].finish_reason == "stop"
    assert done.model_extra is not None and done.model_extra["tripwire"]["action"] == "allow"
    chunks = list(
        client.chat.completions.create(
            model="taught",
            messages=msgs,
            temperature=0,
            max_tokens=60,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"tripwire": {"scores": True}},
        )  # fmt: skip
    )
    deltas = [c.choices[0] for c in chunks if c.choices]
    assert "".join(d.delta.content or "" for d in deltas) == TOOL_CALL
    assert deltas[-1].finish_reason == "stop"
    scored = [d.model_extra["tripwire"]["scores"]["probe"] for d in deltas if d.delta.content]
    assert scored and all(isinstance(s, float) for s in scored)
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    two = client.chat.completions.create(
        model="taught", messages=msgs, temperature=0, max_tokens=60, n=2
    )
    assert [c.message.content for c in two.choices] == [TOOL_CALL, TOOL_CALL]
    assert [c.index for c in two.choices] == [0, 1]


def test_tool_calls_through_the_openai_client(taught_server: GuardServer) -> None:
    client = taught_server.client()
    msgs: Any = user(PROMPTS[71])
    done = client.chat.completions.create(
        model="taught",
        messages=msgs,
        tools=TOOLS,
        temperature=0,
        max_tokens=60,  # type: ignore[arg-type]
    )
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]  # type: ignore[index]
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    stream = client.chat.completions.create(
        model="taught",
        messages=msgs,
        tools=TOOLS,
        temperature=0,
        max_tokens=60,
        stream=True,  # type: ignore[arg-type]
    )
    deltas = [c.choices[0] for c in stream if c.choices]
    assert not "".join(d.delta.content or "" for d in deltas)  # the JSON was held, not sent
    calls = [tc for d in deltas for tc in d.delta.tool_calls or []]
    assert [tc.function.name for tc in calls] == ["get_weather"]  # type: ignore[union-attr]
    assert json.loads(calls[0].function.arguments) == {"city": "Paris"}  # type: ignore[union-attr, arg-type]
    assert deltas[-1].finish_reason == "tool_calls"


def test_every_choice_is_gated_over_http(gated_server: GuardServer) -> None:
    client = gated_server.client()
    bad: Any = user(PROMPTS[220], trigger=True)
    raw = client.chat.completions.with_raw_response.create(
        model="tiny", messages=bad, n=2, temperature=0.8, seed=1, max_tokens=6
    )
    assert raw.headers["x-tripwire-action"] == "block"
    done = raw.parse()
    assert [c.finish_reason for c in done.choices] == ["content_filter", "content_filter"]
    assert all("blocked (planted" in (c.message.content or "") for c in done.choices)
    with client.chat.completions.with_streaming_response.create(
        model="tiny", messages=bad, n=2, max_tokens=6, stream=True
    ) as resp:
        assert resp.headers["x-tripwire-action"] == "block"
        ends = {c.choices[0].index: c.choices[0].finish_reason for c in resp.parse() if c.choices}
    assert ends == {0: "content_filter", 1: "content_filter"}
    # Calibrated on greedy answers, so asked greedily (see docs/guard.md on sampling).
    ok = client.chat.completions.with_raw_response.create(
        model="tiny",
        messages=user(PROMPTS[60]),
        n=2,
        temperature=0,
        max_tokens=3,  # type: ignore[arg-type]
    )
    assert ok.headers["x-tripwire-action"] == "allow", ok.text
    assert [c.finish_reason for c in ok.parse().choices] == ["length", "length"]


def test_concurrent_requests_share_a_batch(gated_server: GuardServer) -> None:
    client = gated_server.client()
    answers: list[str] = []

    def ask(i: int) -> None:
        done = client.chat.completions.create(
            model="tiny",
            messages=user(PROMPTS[230 + i]),
            max_tokens=2,
            temperature=0,  # type: ignore[arg-type]
        )
        answers.append(done.choices[0].finish_reason)

    before = httpx.get(f"{gated_server.url}/healthz").json()["batches"]
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    after = httpx.get(f"{gated_server.url}/healthz").json()["batches"]
    assert len(answers) == 4
    assert after["requests"] - before["requests"] == 4
    assert after["run"] - before["run"] < 4  # some requests ran together (300 ms window)


def _one_line_4xx(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    message = response.json()["error"]["message"]
    assert message and "\n" not in message
    return str(message)


def test_bad_input_gets_a_one_line_4xx(gated_server: GuardServer) -> None:
    client = gated_server.client()
    with pytest.raises(openai.NotFoundError, match="is not served here"):
        client.chat.completions.create(model="gpt-4o", messages=user("hi"))  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match=r"messages\[0\].role must be one of"):
        client.chat.completions.create(model="tiny", messages=[{"role": "bot", "content": "x"}])  # type: ignore[list-item]
    with pytest.raises(openai.BadRequestError, match="context is 256"):
        client.chat.completions.create(model="tiny", messages=user("weather " * 400))  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError, match="ask for at most"):
        client.chat.completions.create(model="tiny", messages=user("hi"), max_tokens=10_000)  # type: ignore[arg-type]
    url = f"{gated_server.url}/v1/chat/completions"
    _one_line_4xx(httpx.post(url, content=b"{not json"), 400)
    _one_line_4xx(httpx.post(url, json={"messages": "hi"}), 400)
    huge = {"messages": [{"role": "user", "content": "x" * 200_000}]}
    assert "limit" in _one_line_4xx(httpx.post(url, json=huge), 413)
    _one_line_4xx(httpx.get(f"{gated_server.url}/v1/nothing"), 404)
    _one_line_4xx(httpx.get(url), 405)
    models = gated_server.client().models.list()
    assert [m.id for m in models.data] == ["tiny"]
    health = httpx.get(f"{gated_server.url}/healthz").json()
    assert health["detectors"] == [{"name": "planted", "layers": [LAYER], "calibrated": True}]


def test_guard_refuses_an_uncalibrated_detector(
    llama_dir: Path, planted: Path, tmp_path: Path
) -> None:
    for suffix in (".json", ".safetensors"):
        shutil.copy(planted.with_suffix(suffix), tmp_path / f"raw{suffix}")
    done = _cli("--model", str(llama_dir), "--detector", f"{tmp_path / 'raw'}:{LAYER}", timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "not calibrated" in lines[0] and "--allow-uncalibrated" in lines[0]


def test_calibrate_refuses_too_little_traffic_and_writes_nothing(
    llama_dir: Path, planted: Path, tmp_path: Path
) -> None:
    for suffix in (".json", ".safetensors"):
        shutil.copy(planted.with_suffix(suffix), tmp_path / f"raw{suffix}")
    traffic = tmp_path / "few.jsonl"
    traffic.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS[:10]))
    done = _cli(
        "calibrate", "--model", str(llama_dir), "--detector", f"{tmp_path / 'raw'}:{LAYER}",
        "--traffic", str(traffic),
    )  # fmt: skip
    assert done.returncode == 2
    assert "needs at least 99 honest prompts, got 10" in done.stderr
    assert not sidecar_path(tmp_path / "raw").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "bot", "content": "x"}]}\n')
    done = _cli(
        "calibrate", "--model", str(llama_dir), "--detector", f"{tmp_path / 'raw'}:{LAYER}",
        "--traffic", str(bad),
    )  # fmt: skip
    assert done.returncode == 2 and "bad.jsonl:1:" in done.stderr
    assert not sidecar_path(tmp_path / "raw").exists()


HOSTILE: list[bytes] = [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"messages":' + b"[" * 5000 + b"]" * 5000 + b"}",
    b'{"messages":[{"role":"user","content":"\\ud800"}]}',
    b'{"messages":[{"role":"user","content":"hi\\u0000"}],"stop":"\\udfff"}',
    b'{"messages":[{"role":"user","content":"hi"}],"temperature":NaN}',
    b'{"messages":[{"role":"user","content":"hi"}],"top_p":Infinity,"n":1e999}',
    b'{"messages":[{"role":"user","content":"hi"}],"max_tokens":1' + b"0" * 5000 + b"}",
    b'{"messages":[{"role":"user","content":"hi"}],"seed":1' + b"0" * 40 + b"}",
    b'{"messages":[{"role":"user","content":"hi"}],"tool_choice":{"type":"function",'
    b'"function":"f"},"tools":[{"type":"function","function":{"name":"f"}}]}',
    b'{"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function",'
    b'"function":{"name":"f","parameters":{"properties":7}}}]}',
    b'{"messages":[{"role":"assistant","content":null,"tool_calls":[{"function":'
    b'{"name":1,"arguments":{"x":[1]}}}]},{"role":"tool","content":"1","tool_call_id":[]}]}',
    b'{"messages":[{"role":"user","content":""}],"max_tokens":2}',
    b'{"messages":[{"role":"user","content":"hi"}],"stream_options":[1],"tripwire":[]}',
    b"\xff\xfe\x00\x00",
    b"",
    b"null",
]


def _call(case: Any, url: str) -> Any:
    """One generated case, its answers kept short (the schema allows up to the context)."""
    body = case.body
    if isinstance(body, dict):
        for key in ("max_tokens", "max_completion_tokens"):
            if isinstance(body.get(key), int) and not isinstance(body[key], bool):
                body[key] = min(body[key], 4)
    return case.call(base_url=url, timeout=120)


def test_no_generated_request_gets_a_5xx(gated_server: GuardServer) -> None:
    """Schemathesis: valid and invalid bodies from the server's own OpenAPI, bounded in count,
    checked with its not_a_server_error and response-schema checks; then hostile bodies."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    schema = schemathesis.openapi.from_url(f"{gated_server.url}/openapi.json")
    ops = {f"{o.method.upper()} {o.path}": o for o in (r.ok() for r in schema.get_all_operations())}
    assert {"POST /v1/chat/completions", "GET /v1/models", "GET /healthz"} <= set(ops)
    body = ops["POST /v1/chat/completions"].definition.raw["requestBody"]
    declared = body["content"]["application/json"]["schema"]["properties"]
    assert {"messages", "tools", "tool_choice", "stream", "n", "stop"} <= set(declared)
    statuses: list[int] = []
    answered: list[str] = []  # the chat completions answered, by content type
    failures: list[str] = []
    for op in ops.values():

        @settings(
            max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        @given(
            case=st.one_of(
                op.as_strategy(schemathesis.GenerationMode.POSITIVE),
                op.as_strategy(schemathesis.GenerationMode.NEGATIVE),
            )
        )
        def run(case: schemathesis.Case) -> None:
            resp = _call(case, gated_server.url)
            statuses.append(resp.status_code)
            if case.method == "POST" and resp.status_code == 200:
                answered.append(resp.headers["content-type"][0].split(";")[0])
            try:
                case.validate_response(
                    resp, checks=[not_a_server_error, response_schema_conformance]
                )
            except Exception as exc:  # schemathesis's failure group: one line per case
                head = str(exc).strip().splitlines()[0][:160]
                failures.append(f"{case.method} {case.path} {str(case.body)[:160]}: {head}")

        run()
    assert failures == [], "\n".join(failures)
    chat = ops["POST /v1/chat/completions"]
    for stream in (False, True):  # a real answer each way conforms (the fuzz rarely gets one)
        msgs = [{"role": "user", "content": "Hi"}]
        case = chat.Case(body={"messages": msgs, "max_tokens": 3, "stream": stream},
                         media_type="application/json")  # fmt: skip
        resp = _call(case, gated_server.url)
        assert resp.status_code == 200, resp.text
        case.validate_response(resp, checks=[not_a_server_error, response_schema_conformance])
    hostile: list[int] = []
    url = f"{gated_server.url}/v1/chat/completions"
    for raw in HOSTILE:
        resp = httpx.post(url, content=raw, headers={"content-type": "application/json"})
        hostile.append(resp.status_code)
        if resp.status_code >= 500:
            failures.append(f"{raw[:80]!r} -> {resp.status_code}: {resp.text[:120]}")
        elif resp.status_code >= 400:
            _one_line_4xx(resp, resp.status_code)
    assert failures == [], "\n".join(failures)
    # The fuzz was answered for real (the two GETs and some chats) and refused for real.
    assert answered and statuses.count(200) >= 3, (answered, statuses)
    assert sum(400 <= s < 500 for s in statuses) >= 5, statuses
    assert hostile.count(400) >= 10 and 200 in hostile, hostile
    assert "Traceback" not in gated_server.log.read_text()
