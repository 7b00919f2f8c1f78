"""The guard in-process: the prefill gate, the decode monitor and the generation loop."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.guard.conftest import LAYER, PROMPTS, TOOL_CALL, honest_traffic, user
from tripwire.errors import UsageError
from tripwire.guard import Guard, GuardDetector, PrefillThresholds, load_detector
from tripwire.guard.calibrate import calibrate
from tripwire.guard.engine import Engine, Gate, GenRequest
from tripwire.guard.rules import DecodeRule
from tripwire.models.chat import Rendered
from tripwire.whitebox import DiffMeans, MahalanobisDetector, capture, suspicion
from tripwire.whitebox.detectors._base import Persisted


@pytest.fixture(scope="module")
def gated(llama: Any, planted: Path) -> GuardDetector:
    """The planted detector calibrated on 40 honest prompts to a 5% false-block budget."""
    det = load_detector(f"{planted}:{LAYER}")
    return calibrate(llama, det, honest_traffic(40), budget=0.05, max_tokens=4).detector


def _count_forwards(lm: Any) -> tuple[list[tuple[int, ...]], Any]:
    shapes: list[tuple[int, ...]] = []

    def pre(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        shapes.append(tuple(kwargs["input_ids"].shape))

    return shapes, lm.model.register_forward_pre_hook(pre, with_kwargs=True)


def test_prefill_gate_blocks_the_planted_direction_before_the_first_token(
    llama: Any, gated: GuardDetector
) -> None:
    guard = Guard(llama, [gated])
    shapes, handle = _count_forwards(llama)
    try:
        blocked = guard.chat(user(PROMPTS[200], trigger=True), n=2, max_tokens=8, temperature=0)
        n_prompt = blocked["usage"]["prompt_tokens"]
        assert shapes == [(1, n_prompt)]  # the KV-cache pass, and nothing else
        shapes.clear()
        allowed = guard.chat(user(PROMPTS[201]), max_tokens=5, temperature=0)
    finally:
        handle.remove()
    for choice in blocked["choices"]:  # every choice, not only the first
        assert choice["finish_reason"] == "content_filter"
        assert choice["message"]["content"].startswith(
            "[tripwire: this answer was blocked (planted"
        )
    assert blocked["usage"]["completion_tokens"] == 0
    assert blocked["tripwire"]["action"] == "block"
    assert blocked["tripwire"]["prefill"]["scores"]["planted"] > gated.prefill.block  # type: ignore[union-attr]
    # Allowed: one pass over the prompt, then one token per forward (each scored before release).
    assert allowed["choices"][0]["finish_reason"] == "length"
    assert shapes[0] == (1, allowed["usage"]["prompt_tokens"]) and shapes[1:] == [(1, 1)] * 5


def test_held_out_triggers_blocked_and_honest_prompts_pass(
    llama: Any, gated: GuardDetector
) -> None:
    guard = Guard(llama, [gated])

    def action(msgs: list[dict[str, str]]) -> str:
        return guard.chat(msgs, max_tokens=1, temperature=0)["tripwire"]["prefill"]["action"]

    triggered = [action(user(p, trigger=True)) for p in PROMPTS[200:215]]
    honest = [action(m) for m in honest_traffic(30, start=60)]
    assert triggered.count("block") == len(triggered)
    assert honest.count("block") <= 3  # 5% budget on 30 held-out prompts, with room for noise


@pytest.mark.parametrize("kind", ["diffmeans", "mahalanobis"])
def test_the_gate_reads_what_capture_reads_in_a_padded_batch(
    llama: Any, planted: Path, tmp_path: Path, kind: str
) -> None:
    """Linear and Mahalanobis detectors are scored on the device (each in its own form): both
    equal ``suspicion`` of the residuals the public ``capture()`` reads."""
    base = planted
    if kind == "mahalanobis":
        honest = [Rendered(llama.chat(m)) for m in honest_traffic(30)]
        MahalanobisDetector().fit(capture(llama, honest, layers=[LAYER])[LAYER]).save(
            tmp_path / "maha"
        )
        base = tmp_path / "maha"
    det = load_detector(f"{base}:{LAYER}")
    assert (det.linear is not None) == (kind == "diffmeans")
    assert (det.gaussian is not None) == (kind == "mahalanobis")
    guard = Guard(llama, [det])
    msgs = [user("Hi"), user(PROMPTS[3] + " " + PROMPTS[4], trigger=True), user(PROMPTS[5])]
    preps = [guard.prepare({"messages": m, "max_tokens": 1}) for m in msgs]
    assert len({len(p.request.prompt_ids) for p in preps}) == 3  # left padding is exercised
    got: dict[int, float] = {}

    def sink(i: int, ev: Any) -> None:
        if isinstance(ev, Gate):
            got[i] = ev.verdict.scores[det.name]

    guard.run(preps, sink)
    x = capture(llama, [Rendered(llama.chat(m)) for m in msgs], layers=[LAYER])[LAYER]
    want = suspicion(Persisted.load(base), x)
    np.testing.assert_allclose([got[i] for i in range(3)], want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_a_batch_decodes_what_each_prompt_decodes_alone(make_lm: Any, arch: str) -> None:
    lm = make_lm(arch, seed=3)
    engine = Engine(Guard(lm).backend, Guard(lm).monitor, lm.tokenizer)
    tok = lm.tokenizer
    prompts = [tok(lm.chat(user(p)), add_special_tokens=False)["input_ids"] for p in PROMPTS[7:9]]
    assert len(prompts[0]) != len(prompts[1])
    ids: dict[int, list[int]] = {0: [], 1: []}
    engine._next = _recording(engine._next, ids)  # type: ignore[method-assign]
    engine.run([GenRequest(p, max_tokens=6, temperature=0) for p in prompts], lambda i, e: None)
    for b, p in enumerate(prompts):
        ref = lm.model.generate(
            torch.tensor([p]), max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id
        )[0, len(p) :].tolist()
        assert ids[b] == ref


def _recording(next_fn: Any, ids: dict[int, list[int]]) -> Any:
    def wrapped(rows: list[Any], logits: torch.Tensor, gens: Any) -> list[int]:
        out = next_fn(rows, logits, gens)
        for r, t in zip(rows, out, strict=True):
            ids[r.request].append(t)
        return out

    return wrapped


def _direction_detector(tmp_path: Path, direction: np.ndarray) -> GuardDetector:
    rng = np.random.default_rng(0)
    det = DiffMeans().fit(rng.standard_normal((4, direction.size)), [0, 0, 1, 1])
    det.direction_, det.offset_ = direction, 0.0
    det.save(tmp_path / "probe")
    return load_detector(f"{tmp_path / 'probe'}:{LAYER}")


def _residuals(lm: Any, guard: Guard, msgs: list[dict[str, str]]) -> np.ndarray:
    """The layer-LAYER residual of every token the guard fed (prefill last token first)."""
    rows: list[np.ndarray] = []

    def hook(module: Any, args: Any, output: Any) -> None:
        hidden = output[0] if isinstance(output, tuple) else output
        rows.append(hidden[0, -1].detach().float().numpy().copy())

    handle = lm.blocks[LAYER].register_forward_hook(hook)
    try:
        guard.chat(msgs, max_tokens=40, temperature=0)
    finally:
        handle.remove()
    return np.stack(rows)


def test_decode_monitor_cuts_a_stream_mid_way(taught: Any, tmp_path: Path) -> None:
    msgs = user(PROMPTS[30])
    plain = _direction_detector(tmp_path, np.ones(taught.d_model) / np.sqrt(taught.d_model))
    r = _residuals(taught, Guard(taught, [plain]), msgs)
    tok = taught.tokenizer
    answer = tok(TOOL_CALL, add_special_tokens=False)["input_ids"]
    k = len(tok(TOOL_CALL[: TOOL_CALL.index("Paris")], add_special_tokens=False)["input_ids"]) + 1
    assert 3 < k < len(answer)  # mid-way
    d = r[k] - r[1:k].mean(0)
    d /= np.linalg.norm(d)
    s = r @ d
    before = s[1:k]
    base = DecodeRule("cusum", float(before.mean()), float(before.std()) + 1e-6, np.inf)
    path = base.path(s[1:])
    level = float((path[: k - 1].max() + path[k - 1]) / 2)
    assert path[k - 1] > level > path[: k - 1].max()
    rule = dataclasses.replace(base, level=level)
    guard = Guard(taught, [dataclasses.replace(_direction_detector(tmp_path, d), decode=rule)])
    chunks = list(guard.stream(msgs, max_tokens=40, temperature=0, scores=True))
    deltas = [c["choices"][0] for c in chunks if c["choices"]]
    last = deltas[-1]
    assert last["finish_reason"] == "content_filter"
    assert (
        "cusum" in last["delta"]["content"]
        and f"generated token {k - 1}" in last["delta"]["content"]
    )
    assert last["tripwire"]["action"] == "block"
    sent = "".join(x["delta"].get("content", "") for x in deltas[1:-1])
    assert sent == tok.decode(answer[: k - 1])  # the alarming token itself was never sent
    scores = [x["tripwire"]["scores"]["probe"] for x in deltas[1:-1]]
    np.testing.assert_allclose(scores, s[1:k], rtol=1e-4, atol=1e-5)


def test_every_sampled_choice_is_monitored_on_its_own(taught: Any, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    d = rng.standard_normal(taught.d_model)
    det = _direction_detector(tmp_path, d / np.linalg.norm(d))
    rule = DecodeRule("cusum", mean=0.0, std=float(np.std(d)), level=3.0, k=0.0)
    guard = Guard(taught, [dataclasses.replace(det, decode=rule)])
    answer = guard.chat(user(PROMPTS[31]), n=3, temperature=1.5, seed=4, max_tokens=30, scores=True)
    cut = 0
    for choice, ext in zip(answer["choices"], answer["tripwire"]["choices"], strict=True):
        released = ext["scores"].get("probe", [])
        path = rule.path(released)
        assert (path <= rule.level).all()  # no released token had alarmed
        if choice["finish_reason"] == "content_filter":
            cut += 1
            assert ext["action"] == "block" and "cusum" in ext["reasons"][0]
    assert cut > 0  # the rule did act on at least one sampled choice


def test_stop_strings_max_tokens_and_seeds(taught: Any) -> None:
    guard = Guard(taught)
    msgs = user(PROMPTS[40])
    full = guard.chat(msgs, temperature=0, max_tokens=60)["choices"][0]
    assert full["message"]["content"] == TOOL_CALL and full["finish_reason"] == "stop"
    stopped = guard.chat(msgs, temperature=0, stop=["Paris", "zzz"])["choices"][0]
    assert stopped["message"]["content"] == TOOL_CALL[: TOOL_CALL.index("Paris")]
    assert stopped["finish_reason"] == "stop"
    streamed = guard.stream(msgs, temperature=0, stop=["Paris"])
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in streamed if c["choices"])
    assert text == stopped["message"]["content"]
    short = guard.chat(msgs, temperature=0, max_tokens=3)
    assert short["choices"][0]["finish_reason"] == "length"
    assert short["usage"]["completion_tokens"] == 3
    a = guard.chat(msgs, temperature=1.5, seed=11, n=2, max_tokens=12)
    b = guard.chat(msgs, temperature=1.5, seed=11, n=2, max_tokens=12)
    assert [c["message"] for c in a["choices"]] == [c["message"] for c in b["choices"]]


def test_calibration_needs_enough_honest_traffic(llama: Any, planted: Path) -> None:
    det = load_detector(f"{planted}:{LAYER}")
    with pytest.raises(UsageError, match="needs at least 99 honest prompts, got 10"):
        calibrate(llama, det, honest_traffic(10), budget=0.01)


def test_a_flagged_prompt_is_answered_and_marked(llama: Any, gated: GuardDetector) -> None:
    flagging = dataclasses.replace(gated, prefill=PrefillThresholds(block=1e9, flag=-1e9))
    answer = Guard(llama, [flagging]).chat(user(PROMPTS[202]), max_tokens=2, temperature=0)
    assert answer["tripwire"]["action"] == "flag"  # the server's x-tripwire-action header
    assert answer["tripwire"]["prefill"]["reasons"][0].startswith("planted")
    assert answer["choices"][0]["finish_reason"] == "length"


def test_closing_a_stream_stops_its_generation(llama: Any) -> None:
    guard = Guard(llama)
    shapes, handle = _count_forwards(llama)
    try:
        stream = guard.stream(user(PROMPTS[203]), max_tokens=200, temperature=0)
        for _ in range(3):
            next(stream)
        stream.close()  # what the server does when a client goes away
    finally:
        handle.remove()
    assert len(shapes) < 50  # not the 200 tokens asked for


def test_tiny_temperatures_are_greedy_not_a_crash(llama: Any) -> None:
    """Found by the schemathesis run: ``logits / 1e-300`` overflowed to NaN (a 500)."""
    guard = Guard(llama)
    msgs = user(PROMPTS[204])
    greedy = guard.chat(msgs, temperature=0, max_tokens=4)["choices"][0]["message"]
    for t in (5e-324, 1e-300, 1e-40):
        answer = guard.chat(msgs, temperature=t, seed=-(2**63), max_tokens=4)
        assert answer["choices"][0]["message"] == greedy
    hot = guard.chat(msgs, temperature=1e-4, seed=3, max_tokens=4)  # sampled, stable
    assert hot["choices"][0]["finish_reason"] == "length"


def test_a_chat_template_that_refuses_the_messages_is_a_400(llama: Any) -> None:
    from tripwire.guard.chat import RequestError

    tok = llama.tokenizer
    template = tok.chat_template
    tok.chat_template = "{{ raise_exception('Conversation roles must alternate') }}"
    try:
        with pytest.raises(RequestError, match="chat template refused.*must alternate") as info:
            Guard(llama).prepare({"messages": user("hi")})
    finally:
        tok.chat_template = template
    assert info.value.status == 400 and info.value.param == "messages"
