"""``--policy``: shadow mode, per-detector caps, the notice and on_error, in-process and on a real
``tripwire guard`` process; a malformed policy file is one line, exit 2."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.guard.conftest import LAYER, PROMPTS, honest_traffic, user
from tests.guard.test_server import GuardServer, _cli, _save
from tripwire.errors import UsageError
from tripwire.guard import Guard, GuardDetector, load_detector
from tripwire.guard.calibrate import calibrate
from tripwire.guard.detectors import write_sidecar
from tripwire.guard.policy import Policy, load_policy, parse_policy
from tripwire.guard.rules import DecodeRule

BAD = user(PROMPTS[205], trigger=True)


@pytest.fixture(scope="module")
def gated(llama: Any, planted: Path) -> GuardDetector:
    det = load_detector(f"{planted}:{LAYER}")
    return calibrate(llama, det, honest_traffic(40), budget=0.05, max_tokens=4).detector


def _alarm_at_once(det: GuardDetector) -> GuardDetector:
    """The detector with no prefill gate and a decode rule that alarms at the first token."""
    rule = DecodeRule("cusum", mean=0.0, std=1.0, level=-1.0)
    return dataclasses.replace(det, prefill=None, decode=rule)


def test_shadow_serves_what_enforce_blocks_and_reports_it(llama: Any, gated: GuardDetector) -> None:
    enforced = Guard(llama, [gated]).chat(BAD, max_tokens=3, temperature=0)
    assert enforced["choices"][0]["finish_reason"] == "content_filter"
    shadow = Guard(llama, [gated], policy=Policy(mode="shadow"))
    served = shadow.chat(BAD, max_tokens=3, temperature=0)
    assert served["choices"][0]["finish_reason"] == "length"
    ext = served["tripwire"]
    assert ext["action"] == "allow" and ext["shadow_action"] == "block" and ext["mode"] == "shadow"
    assert ext["prefill"]["action"] == "allow" and ext["prefill"]["shadow_action"] == "block"
    assert ext["prefill"]["reasons"] == enforced["tripwire"]["prefill"]["reasons"]
    # A decode cut, in shadow: the answer runs to its end; the would-be cut is reported.
    cutting = _alarm_at_once(gated)
    cut = Guard(llama, [cutting]).chat(user(PROMPTS[206]), max_tokens=4, temperature=0)
    assert cut["choices"][0]["finish_reason"] == "content_filter"
    assert cut["usage"]["completion_tokens"] == 0
    chunks = list(
        Guard(llama, [cutting], policy=Policy(mode="shadow")).stream(
            user(PROMPTS[206]), max_tokens=4, temperature=0
        )
    )
    last = [c["choices"][0] for c in chunks if c["choices"]][-1]
    assert last["finish_reason"] == "length"
    assert last["tripwire"]["action"] == "allow" and last["tripwire"]["shadow_action"] == "block"
    assert len(last["tripwire"]["reasons"]) == 1 and "cusum" in last["tripwire"]["reasons"][0]


def test_a_demoted_detector_flags_instead_of_blocking(llama: Any, gated: GuardDetector) -> None:
    policy = parse_policy({"detectors": {"planted": {"prefill": "flag"}}})
    gate_only = dataclasses.replace(gated, decode=None)  # its decode rule would cut this one
    answer = Guard(llama, [gate_only], policy=policy).chat(BAD, max_tokens=2, temperature=0)
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["tripwire"]["action"] == "flag"
    assert "the policy caps planted at flag" in answer["tripwire"]["prefill"]["reasons"][0]
    # Its decode rule still cuts (the cap was for prefill only); capped there too, it flags.
    cutting = _alarm_at_once(gated)
    cut = Guard(llama, [cutting], policy=policy).chat(user(PROMPTS[207]), max_tokens=3)
    assert cut["choices"][0]["finish_reason"] == "content_filter"
    both = Guard(llama, [cutting], policy=parse_policy({"detectors": {"planted": "flag"}}))
    flagged = both.chat(user(PROMPTS[207]), max_tokens=3, temperature=0)
    assert flagged["choices"][0]["finish_reason"] == "length"
    assert flagged["tripwire"]["action"] == "flag"
    assert flagged["tripwire"]["choices"][0]["action"] == "flag"
    off = Guard(llama, [gated], policy=parse_policy({"detectors": {"planted": "allow"}}))
    assert off.chat(BAD, max_tokens=2)["tripwire"]["action"] == "allow"


def test_the_policy_notice_replaces_a_blocked_answer(llama: Any, gated: GuardDetector) -> None:
    guard = Guard(llama, [gated], policy=Policy(notice="Withheld by policy."))
    answer = guard.chat(BAD, max_tokens=2)
    assert answer["choices"][0]["message"]["content"] == "Withheld by policy."
    assert "planted" in answer["tripwire"]["prefill"]["reasons"][0]  # the reasons stay here
    chunks = list(guard.stream(BAD, max_tokens=2))
    ends = [c["choices"][0] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert ends[0]["delta"]["content"] == "Withheld by policy."


def test_a_detector_that_raises_fails_closed_or_open(llama: Any, planted: Path) -> None:
    # A real misconfiguration: a one-layer probe told to read two layers (a shape error).
    wrong = load_detector(f"{planted}:{LAYER},{LAYER + 1}")
    closed = Guard(llama, [wrong]).chat(user(PROMPTS[208]), max_tokens=2)  # the default
    assert closed["choices"][0]["finish_reason"] == "content_filter"
    why = closed["tripwire"]["prefill"]["reasons"][0]
    assert "planted raised while scoring" in why and "on_error fail-closed" in why
    opened = Guard(llama, [wrong], policy=Policy(on_error="fail-open"))
    answer = opened.chat(user(PROMPTS[208]), max_tokens=2, temperature=0)
    assert answer["choices"][0]["finish_reason"] == "length"
    assert answer["tripwire"]["action"] == "flag"
    assert "on_error fail-open" in answer["tripwire"]["prefill"]["reasons"][0]
    # At decode (the gate has no thresholds, so only the decode rule reads the detector).
    rule = DecodeRule("cusum", mean=0.0, std=1.0, level=1e9)
    decoding = dataclasses.replace(wrong, prefill=None, decode=rule)
    cut = Guard(llama, [decoding]).chat(user(PROMPTS[208]), max_tokens=3)
    assert cut["choices"][0]["finish_reason"] == "content_filter"
    served = Guard(llama, [decoding], policy=Policy(on_error="fail-open")).chat(
        user(PROMPTS[208]), max_tokens=3, temperature=0
    )
    assert served["choices"][0]["finish_reason"] == "length"
    assert (
        "raised while scoring the last prompt token" in served["tripwire"]["prefill"]["reasons"][0]
    )
    reasons = served["tripwire"]["choices"][0]["reasons"]  # once per answer, not per token
    assert len(reasons) == 1 and "raised while scoring generated token 0" in reasons[0]


def test_policy_files_are_checked(tmp_path: Path, gated: GuardDetector, llama: Any) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"mode": "shadow", "detectors": {"planted": {"decode": "flag"}}}))
    policy = load_policy(good)
    assert policy.mode == "shadow" and policy.cap("planted", "decode") == "flag"
    assert policy.cap("planted", "prefill") == "block" and policy.cap("other", "decode") == "block"
    for raw, message in [
        ('{"mode": "audit"}', "mode must be one of enforce, shadow"),
        ('{"on_error": "ignore"}', "on_error must be one of fail-closed, fail-open"),
        ('{"detectors": {"planted": "drop"}}', "detectors.planted must be one of allow"),
        ('{"detectors": {"planted": {"prefil": "flag"}}}', "unknown stage 'prefil'"),
        ('{"notice": ""}', "notice must be a non-empty string"),
        ('{"mdoe": "shadow"}', "unknown key 'mdoe'"),
        ("[1]", "must be a JSON object"),
        ('{"mode": ', "is not valid JSON"),
    ]:
        bad = tmp_path / "bad.json"
        bad.write_text(raw)
        with pytest.raises(UsageError, match=message):
            load_policy(bad)
    with pytest.raises(UsageError, match="names detector 'nope', which is not served"):
        Guard(llama, [gated], policy=parse_policy({"detectors": {"nope": "flag"}}))


@pytest.fixture(scope="module")
def shadow_server(
    llama: Any, gated: GuardDetector, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GuardServer]:
    work = tmp_path_factory.mktemp("shadow")
    model = _save(llama, work / "model")
    for suffix in (".json", ".safetensors"):
        assert gated.path is not None
        (work / f"planted{suffix}").write_bytes(gated.path.with_suffix(suffix).read_bytes())
    det = dataclasses.replace(gated, path=work / "planted")
    write_sidecar(det, "tiny", {})
    policy = work / "policy.json"
    policy.write_text(json.dumps({"mode": "shadow", "notice": "unused in shadow"}))
    server = GuardServer(
        work / "log.txt", "--model", str(model), "--detector", str(work / "planted"),
        "--policy", str(policy), "--name", "tiny",
    )  # fmt: skip
    yield server
    server.stop()


def test_shadow_mode_over_http_reports_the_would_be_action(shadow_server: GuardServer) -> None:
    client = shadow_server.client()
    raw = client.chat.completions.with_raw_response.create(
        model="tiny",
        messages=BAD,
        max_tokens=2,
        temperature=0,  # type: ignore[arg-type]
    )
    assert raw.headers["x-tripwire-action"] == "allow"
    assert raw.headers["x-tripwire-shadow-action"] == "block"
    assert raw.parse().choices[0].finish_reason == "length"
    with client.chat.completions.with_streaming_response.create(
        model="tiny",
        messages=BAD,
        max_tokens=2,
        stream=True,  # type: ignore[arg-type]
    ) as resp:
        assert resp.headers["x-tripwire-action"] == "allow"
        assert resp.headers["x-tripwire-shadow-action"] == "block"
        ends = [c.choices[0].finish_reason for c in resp.parse() if c.choices]
    assert ends[-1] == "length"


def test_a_malformed_policy_is_one_line_exit_2_before_the_model_loads(tmp_path: Path) -> None:
    bad = tmp_path / "policy.json"
    bad.write_text('{"mode": "shadw"}')
    # --model names nothing loadable: the policy must be refused before it is tried.
    done = _cli("--model", str(tmp_path / "no-model"), "--policy", str(bad), timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "mode must be one of enforce, shadow, got 'shadw'" in lines[0]
    assert bad.read_text() == '{"mode": "shadw"}'
