"""Pure pieces of the guard: tool-call parsing, request checks, conformal thresholds, rules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tripwire.errors import UsageError
from tripwire.guard.chat import RequestError, parse_body
from tripwire.guard.detectors import (
    PrefillThresholds,
    load_detector,
    sidecar_path,
    write_sidecar,
)
from tripwire.guard.rules import DecodeRule, conformal_threshold, fit_rule
from tripwire.guard.tools import could_be_call, parse_tool_calls
from tripwire.whitebox import DiffMeans

NAMES = ["get_weather", "search"]


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "get_weather", "arguments": {"city": "Paris"}}',
        '  <tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>\n',
        '```json\n{"name": "get_weather", "parameters": {"city": "Paris"}}\n```',
        '{"function": {"name": "get_weather", "arguments": "{\\"city\\": \\"Paris\\"}"}}',
    ],
)
def test_tool_call_forms_parse_to_one_openai_call(text: str) -> None:
    calls = parse_tool_calls(text, NAMES)
    assert calls is not None and len(calls) == 1
    assert calls[0]["type"] == "function" and calls[0]["id"].startswith("call_")
    assert calls[0]["function"]["name"] == "get_weather"
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}


def test_several_calls_and_non_calls() -> None:
    two = parse_tool_calls(
        '[{"name": "search", "arguments": {}}, {"name": "get_weather", '
        '"arguments": {"city": "Oslo"}}]',
        NAMES,
    )
    assert two is not None and [c["function"]["name"] for c in two] == ["search", "get_weather"]
    assert parse_tool_calls('{"name": "rm_rf", "arguments": {}}', NAMES) is None  # undeclared
    assert parse_tool_calls('The answer is {"name": "search"}', NAMES) is None
    assert parse_tool_calls('{"name": "search", "arguments": [1]}', NAMES) is None
    assert parse_tool_calls("{not json", NAMES) is None


def test_streamed_text_is_held_only_while_it_may_be_a_call() -> None:
    assert could_be_call("") and could_be_call("  {") and could_be_call("<tool")
    assert could_be_call("```js")
    assert not could_be_call("Hello") and not could_be_call("<b>")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "bot", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content",
        ),
        ({"messages": [{"role": "user", "content": "x"}], "n": 0}, "n"),
        ({"messages": [{"role": "user", "content": "x"}], "temperature": 3}, "temperature"),
        ({"messages": [{"role": "user", "content": "x"}], "stop": ["a"] * 5}, "stop"),
        ({"messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}, "tool_choice"),
        ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "x"}]}, "tools"),
    ],
)
def test_bad_requests_name_the_parameter_in_one_line(body: dict, param: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_body(body)
    assert info.value.param == param and info.value.status == 400
    assert "\n" not in str(info.value)


def test_request_defaults_follow_openai() -> None:
    p = parse_body(
        {
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "a"}]},
                {"role": "user", "content": "b"},
            ],
            "stop": "x",
        }
    )
    assert p.temperature == 1.0 and p.n == 1 and p.stop == ["x"] and p.max_tokens is None
    assert p.messages[0] == {"role": "system", "content": "a"}


def test_conformal_threshold_rank_and_refusal() -> None:
    scores = np.arange(1.0, 20.0)  # 19 scores: 5% needs 19
    assert conformal_threshold(scores, 0.05) == 19.0  # ceil(20 * 0.95) = 19th smallest
    assert conformal_threshold(np.arange(1.0, 40.0), 0.05) == 38.0  # ceil(40 * .95) = 38
    with pytest.raises(ValueError, match="at least 19 honest prompts, got 18"):
        conformal_threshold(np.arange(18.0), 0.05)


def test_conformal_threshold_keeps_its_false_alarm_budget() -> None:
    rng = np.random.default_rng(0)
    rates = []
    for _ in range(400):
        t = conformal_threshold(rng.standard_normal(99), 0.05)
        rates.append(float((rng.standard_normal(2000) > t).mean()))
    assert np.mean(rates) <= 0.05 + 0.005  # exact in expectation: (n+1-rank)/(n+1) = 0.05


def test_cusum_and_ema_statistics() -> None:
    cusum = DecodeRule("cusum", mean=1.0, std=2.0, level=10.0, k=0.5)
    # z = 0, 2, -1 -> S = max(0, 0 - .5) = 0, max(0, 0 + 2 - .5) = 1.5, max(0, 1.5 - 1.5) = 0
    assert cusum.path([1.0, 5.0, -1.0]).tolist() == [0.0, 1.5, 0.0]
    ema = DecodeRule("ema", mean=0.0, std=1.0, level=10.0, alpha=0.5)
    assert ema.path([2.0, 2.0]).tolist() == [1.0, 1.5]
    with pytest.raises(ValueError, match="unknown decode rule"):
        DecodeRule("page", 0.0, 1.0, 1.0)


def test_fit_rule_cuts_at_most_budget_of_honest_answers() -> None:
    rng = np.random.default_rng(1)
    honest = [rng.standard_normal(30) for _ in range(199)]
    rule = fit_rule(honest, 0.05)
    assert rule.false_stop_rate is not None and rule.false_stop_rate <= 0.05
    fresh = [rng.standard_normal(30) for _ in range(2000)]
    cut = np.mean([rule.path(a).max() > rule.level for a in fresh])
    assert cut <= 0.08  # 5% budget, sampling noise of 199 calibration answers
    shifted = [rng.standard_normal(30) + 1.5 for _ in range(200)]
    assert np.mean([rule.path(a).max() > rule.level for a in shifted]) > 0.9


def test_detector_layers_given_beat_stored_and_none_is_an_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    DiffMeans().fit(rng.standard_normal((8, 4)), [0, 1] * 4).save(tmp_path / "d")
    with pytest.raises(UsageError, match="does not say which layer"):
        load_detector(tmp_path / "d")
    det = load_detector(f"{tmp_path / 'd'}:2")
    det.prefill = PrefillThresholds(block=1.0)
    det.decode = DecodeRule("cusum", 0.0, 1.0, 5.0)
    written = write_sidecar(det, "tiny", {})
    assert written == sidecar_path(tmp_path / "d.safetensors") == tmp_path / "d.guard.json"
    again = load_detector(tmp_path / "d")
    assert again.layers == [2] and again.calibrated and again.prefill == det.prefill
    assert load_detector(f"{tmp_path / 'd'}:1").layers == [1]  # given beats stored
    assert again.linear is not None  # a linear classifier: scored on the device
    x = rng.standard_normal((3, 4))
    np.testing.assert_allclose(again.score({2: x}), x @ again.linear[0] + again.linear[1])


def test_a_mahalanobis_detector_over_two_layers_scores_on_the_device_as_it_does_itself(
    tmp_path: Path,
) -> None:
    """The monitor's device form of a block-wise Mahalanobis detector (one block per layer) gives
    the detector's own suspicion, row by row."""
    import torch

    from tripwire.guard.monitor import Monitor
    from tripwire.whitebox import MahalanobisDetector
    from tripwire.whitebox.detectors import suspicion

    rng = np.random.default_rng(1)
    det = MahalanobisDetector(n_blocks=2).fit(rng.standard_normal((300, 12)))
    det.save(tmp_path / "m")
    g = load_detector(f"{tmp_path / 'm'}:1,3")
    assert g.gaussian is not None and g.linear is None
    x = rng.standard_normal((5, 12)) * np.array([1.0] * 6 + [3.0] * 6)  # the second layer odd
    residuals = {1: torch.tensor(x[:, :6], dtype=torch.float32),
                 3: torch.tensor(x[:, 6:], dtype=torch.float32)}  # fmt: skip
    scores, errors = Monitor([g]).score(residuals)
    assert not errors
    np.testing.assert_allclose(scores["m"], suspicion(det, x), rtol=1e-4, atol=1e-4)
    assert scores["m"].argmax() == suspicion(det, x).argmax()
