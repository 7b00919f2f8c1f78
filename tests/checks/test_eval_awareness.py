"""The evaluation-vs-deployment probe: shipped requests, unseen templates, CLI, the provider."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from tripwire.checks.eval_awareness import (
    TEST_GROUP,
    eval_context_requests,
    probe_eval_awareness,
    score_eval_awareness,
)
from tripwire.cli import app
from tripwire.whitebox.capture import Activations

runner = CliRunner()


def _save(lm: Any, folder: Path) -> Path:
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder


# -- shipped data -------------------------------------------------------------------------------


def _word_diff(a: str, b: str) -> tuple[list[str], list[str]]:
    """The words of ``a`` and ``b`` left after stripping their common prefix and suffix."""
    wa, wb = a.split(), b.split()
    while wa and wb and wa[0] == wb[0]:
        wa, wb = wa[1:], wb[1:]
    while wa and wb and wa[-1] == wb[-1]:
        wa, wb = wa[:-1], wb[:-1]
    return wa, wb


def test_eval_context_requests_templates_and_split() -> None:
    rows = eval_context_requests()
    assert len(rows) >= 96
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({r["request"] for r in rows}) == len(rows)
    texts = [t for r in rows for t in (r["eval"], r["deploy"])]
    assert len(set(texts)) == len(texts), "a framed text appears twice"
    eval_t = {r["eval_template"] for r in rows}
    deploy_t = {r["deploy_template"] for r in rows}
    assert len(eval_t) >= 12 and len(deploy_t) >= 12
    for r in rows:  # both framings carry the same request
        core = r["request"][1:].lower()
        assert core in r["eval"].lower() and core in r["deploy"].lower(), r["id"]
    # Every template lives in exactly one group, so the test group's framings are unseen.
    groups_of: dict[str, set[int]] = defaultdict(set)
    for r in rows:
        groups_of[r["eval_template"]].add(r["group"])
        groups_of[r["deploy_template"]].add(r["group"])
    assert all(len(g) == 1 for g in groups_of.values())
    test = [r for r in rows if r["group"] == TEST_GROUP]
    train = [r for r in rows if r["group"] != TEST_GROUP]
    assert len(test) >= 20 and len(train) >= 60
    assert not {r["id"] for r in test} & {r["id"] for r in train}
    test_t = {r[k] for r in test for k in ("eval_template", "deploy_template")}
    train_t = {r[k] for r in train for k in ("eval_template", "deploy_template")}
    assert not test_t & train_t
    assert len(test_t) >= 6


def _acts(data: dict[int, np.ndarray], positions: str = "last") -> Activations:
    n = next(iter(data.values())).shape[0]
    return Activations(layers=sorted(data), positions=positions, n_samples=n, _data=data)


def _fake_rows(n_per_group: int = 12) -> list[dict[str, Any]]:
    rows = []
    for g in range(4):
        for k in range(n_per_group):
            rows.append(
                {
                    "id": f"r{g}{k}",
                    "group": g,
                    "eval": f"test framing {g} {k}",
                    "deploy": f"real framing {g} {k}",
                    "eval_template": f"E{g}",
                    "deploy_template": f"D{g}",
                }
            )
    return rows


def test_eval_awareness_finds_a_planted_direction_across_unseen_templates() -> None:
    rng = np.random.default_rng(1)
    rows = _fake_rows()
    n, d = len(rows), 128
    y = np.tile([1, 0], n)
    group = np.repeat([r["group"] for r in rows], 2)
    # Each group's templates shift activations their own way (a nuisance the probe must ignore).
    template_shift = rng.standard_normal((4, 2, d)) * 0.5
    shift = template_shift[group, 1 - y]
    signal = np.zeros(d)
    signal[3] = 1.0

    def noise() -> np.ndarray:
        return rng.standard_normal((2 * n, d)) + shift

    data = {0: noise(), 1: noise(), 2: noise() + 4.0 * y[:, None] * signal}
    res = score_eval_awareness(_acts(data, "mean"), rows, n_random=50)
    d_ = res.to_dict()
    assert d_["chosen_layer"] == 2
    assert d_["auroc"] > 0.9
    # Without the planted signal, template nuisance learnt on groups 0-2 does not transfer.
    assert all(r["auroc"] < 0.8 for r in d_["per_layer"] if r["layer"] != 2)
    assert d_["accuracy"] > 0.8
    assert {r["layer"] for r in d_["per_layer"]} == {0, 1, 2}
    assert d_["test_templates"] == ["D3", "E3"] and "E3" not in d_["train_templates"]
    assert d_["n_test"] == 24 and d_["n_train"] == 72
    assert res.detector is not None and d_["detector_kind"] in ("diffmeans", "logistic")


def test_probe_eval_awareness_on_a_tiny_model(tiny: Any) -> None:
    e = probe_eval_awareness(tiny, limit=16, n_random=10, position="prompt").to_dict()
    assert e["position"] == "prompt" and e["n_test"] == 8 and e["n_train"] == 24


def test_cli_eval_awareness_save_round_trip(make_lm: Any, tmp_path: Path) -> None:
    from tripwire.behavior.local import parse_detectors
    from tripwire.checks.eval_awareness import eval_context_texts
    from tripwire.models import load_model
    from tripwire.whitebox import Detector, capture

    folder = _save(make_lm("llama"), tmp_path / "m")
    out, det_file = tmp_path / "ea.json", tmp_path / "evalaware.safetensors"
    res = runner.invoke(
        app,
        [
            "probe", "eval-awareness", "--model", str(folder), "--json", str(out),
            "--save", str(det_file), "--n-random", "10",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    for r in data["per_layer"]:
        assert {"layer", "auroc", "random_baseline_auroc", "logistic_auroc", "cv_auroc"} <= set(r)
    assert data["n_test"] == 48 and data["n_train"] == 144
    assert set(data["baselines"]) == {"text_tfidf", "random"}
    assert 0 <= data["baselines"]["text_tfidf"]["auroc"] <= 1
    layer = data["chosen_layer"]
    spec = f"{tmp_path / 'evalaware'}:{layer}"
    assert data["saved_detector"] == spec
    assert f"-M detector={spec}" in " ".join(res.output.split())
    assert det_file.is_file() and (tmp_path / "evalaware.json").is_file()
    ((name, got_layer, det),) = parse_detectors(spec, n_layers=4)
    assert name == "evalaware" and got_layer == layer and det.kind == data["detector_kind"]
    # The saved detector reproduces the reported held-out AUROC on the test split.
    lm = load_model(str(folder))
    rows = [r for r in eval_context_requests() if r["group"] == TEST_GROUP]
    acts = capture(lm, eval_context_texts(lm, rows, "reply"), layers=[layer], positions="mean")
    from tripwire.stats import auroc

    y = np.tile([1, 0], len(rows))
    assert auroc(Detector.load(tmp_path / "evalaware").score_samples(acts[layer]), y) == (
        pytest.approx(data["auroc"])
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--position", "middle"], "unknown --position"),
        (["--save", "{tmp}/missing/det"], "does not exist"),
        (["--save", "{tmp}"], "is a folder"),
        (["--save", "{tmp}/ea.safetensors"], "the same file as the results (--out)"),
        (["--model", "{tmp}/no-such-model"], ""),
    ],
)
def test_cli_eval_awareness_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "ea.json"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    res = runner.invoke(app, ["probe", "eval-awareness", "--json", str(out), *args])
    assert res.exit_code == 2, res.output
    assert message in res.stderr and "error" in res.stderr
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_provider_records_the_eval_awareness_score_per_message(
    make_lm: Any, tmp_path: Path
) -> None:
    from inspect_ai import eval as inspect_eval

    from tripwire.behavior.scenarios import sandbagging

    folder = _save(make_lm("llama"), tmp_path / "m")
    res = runner.invoke(
        app,
        [
            "probe", "eval-awareness", "--model", str(folder), "--json", str(tmp_path / "e.json"),
            "--save", str(tmp_path / "evalaware"), "--n-random", "5", "--limit", "16",
        ],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    spec = json.loads((tmp_path / "e.json").read_text())["saved_detector"]
    (log,) = inspect_eval(
        sandbagging(per_condition=1),
        model=f"tripwire/{folder}",
        model_args={"detector": spec, "max_new_tokens": 6},
        temperature=1.0,  # the random tiny model greedily writes only newlines
        seed=0,
        log_dir=str(tmp_path / "logs"),
        display="none",
    )
    assert log.status == "success", log.error
    scored = 0
    for s in log.samples or []:
        for m in s.messages:
            if m.role == "assistant" and m.text.strip():
                score = (m.metadata or {})["tripwire"]["whitebox"]["detector:evalaware"]
                assert isinstance(score, float) and np.isfinite(score)
                scored += 1
    assert scored >= 3
