"""World-model (plausibility) and situational-awareness (evaluation vs deployment) probes."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from tripwire.cli import app
from tripwire.whitebox.capture import Activations
from tripwire.whitebox.worldmodel import (
    CATEGORIES,
    PAIRS,
    TEST_GROUP,
    eval_context_requests,
    frame_split,
    plausibility_frames,
    probe_eval_awareness,
    probe_plausibility,
    score_eval_awareness,
    score_plausibility,
)

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


def test_plausibility_frames_are_complete_minimal_and_unique() -> None:
    frames = plausibility_frames()
    assert len(frames) >= 120
    assert len({f["id"] for f in frames}) == len(frames)
    texts = [f[c] for f in frames for c in CATEGORIES]
    assert all(t.strip() for t in texts)
    assert len(set(texts)) == len(texts), "a sentence appears twice"
    for f in frames:
        for a, b in PAIRS:
            da, db = _word_diff(f[a], f[b])
            assert 1 <= max(len(da), len(db)) <= 2, (f["id"], a, b, da, db)
    assert len({f["topic"] for f in frames}) >= 10


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


def test_frame_split_is_seeded_and_needs_frames() -> None:
    from tripwire.errors import UsageError

    a, b = frame_split(40, seed=1), frame_split(40, seed=1)
    assert (a == b).all() and a.sum() == 10
    with pytest.raises(UsageError, match="at least 8 frames"):
        frame_split(5)


# -- the machinery finds a planted signal -------------------------------------------------------


def _acts(data: dict[int, np.ndarray], positions: str = "last") -> Activations:
    n = next(iter(data.values())).shape[0]
    return Activations(layers=sorted(data), positions=positions, n_samples=n, _data=data)


def test_plausibility_finds_a_planted_direction_and_the_baselines_do_not() -> None:
    rng = np.random.default_rng(0)
    n_frames, d = 60, 128
    cat = np.tile(np.arange(3), n_frames)
    frame_offset = np.repeat(rng.standard_normal((n_frames, d)), 3, axis=0)
    signal = np.zeros(d)
    signal[5] = 1.0

    def noise() -> np.ndarray:
        return rng.standard_normal((3 * n_frames, d)) + frame_offset

    data = {0: noise(), 1: noise() + 6.0 * cat[:, None] * signal, 2: noise()}
    logprob = rng.standard_normal(3 * n_frames)  # carries no information
    mask = frame_split(n_frames, seed=0)
    res = score_plausibility(_acts(data), logprob, n_frames, mask, n_random=50).to_dict()
    assert res["chosen_layer"] == 1
    by_layer = {r["layer"]: r for r in res["per_layer"]}
    for name, p in res["pairs"].items():
        assert p["auroc"] > 0.9, name
        assert p["auroc"] > p["random_baseline_auroc"], name
        assert p["logprob_auroc"] < 0.8, name
        assert p["auroc_ci"][0] <= p["auroc"] <= p["auroc_ci"][1]
    assert by_layer[0]["auroc"] < 0.8 and by_layer[2]["auroc"] < 0.8
    assert res["three_way"]["accuracy"] > 0.55  # chance is 1/3
    assert res["three_way"]["logprob_accuracy"] < 0.6
    assert res["n_test_frames"] == 15 and res["n_train_frames"] == 45


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


# -- end to end on a tiny model -----------------------------------------------------------------


def test_probe_functions_on_a_tiny_model(tiny: Any) -> None:
    p = probe_plausibility(tiny, limit=16, n_random=10).to_dict()
    assert p["n_frames"] == 16 and [r["layer"] for r in p["per_layer"]] == [0, 1, 2, 3]
    assert set(p["pairs"]) == {f"{a}_vs_{b}" for a, b in PAIRS}
    e = probe_eval_awareness(tiny, limit=16, n_random=10, position="prompt").to_dict()
    assert e["position"] == "prompt" and e["n_test"] == 8 and e["n_train"] == 24


def test_cli_plausibility_writes_the_json(make_lm: Any, tmp_path: Path) -> None:
    folder = _save(make_lm("llama"), tmp_path / "m")
    out = tmp_path / "plaus.json"
    res = runner.invoke(
        app,
        ["probe", "plausibility", "--model", str(folder), "--json", str(out), "--n-random", "10"],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert [r["layer"] for r in data["per_layer"]] == [0, 1, 2, 3]
    for r in data["per_layer"]:
        assert {"layer", "auroc", "random_baseline_auroc", "cv_auroc"} <= set(r)
        for a, b in PAIRS:
            assert 0 <= r[f"{a}_vs_{b}"]["auroc"] <= 1
    assert data["chosen_layer"] in range(4)
    best = max(data["per_layer"], key=lambda r: (round(r["cv_auroc"], 4), -r["layer"]))
    assert data["chosen_layer"] == best["layer"]  # chosen on the training CV, never the test
    assert set(data["baselines"]) == {"logprob", "random"}
    assert set(data["baselines"]["logprob"]["pairs"]) == set(data["pairs"])
    assert data["n_frames"] >= 120 and data["n_test_frames"] + data["n_train_frames"] == 124
    assert 0 <= data["three_way"]["accuracy"] <= 1 and data["adapter"] is None
    assert "3-way accuracy" in res.output


def test_cli_eval_awareness_save_round_trip(make_lm: Any, tmp_path: Path) -> None:
    from tripwire.behavior.local import parse_detectors
    from tripwire.models import load_model
    from tripwire.whitebox import Detector, capture
    from tripwire.whitebox.worldmodel import eval_context_texts

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
    from tripwire.whitebox.metrics import auroc

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
        (["--save", "{tmp}/ea.safetensors"], "the same file as --json"),
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


def test_cli_plausibility_bad_input_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    res = runner.invoke(app, ["probe", "plausibility", "--json", str(tmp_path)])
    assert res.exit_code == 2 and "is a folder" in res.stderr
    out = tmp_path / "p.json"
    res = runner.invoke(
        app, ["probe", "plausibility", "--json", str(out), "--model", str(tmp_path / "nope")]
    )
    assert res.exit_code == 2 and not out.exists()


# -- the behaviour suite reads the saved detector per message -----------------------------------


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


def test_audit_section_reports_both_probes_with_their_baselines(tiny: Any, tmp_path: Path) -> None:
    from tripwire.audit import run_audit

    report = run_audit(tiny, tmp_path / "out", sections=["worldmodel"], limit=16)
    wm = report["worldmodel"]
    assert wm["plausibility"]["n_frames"] == 16 and wm["eval_awareness"]["n_test"] == 8
    for r in wm["plausibility"]["per_layer"] + wm["eval_awareness"]["per_layer"]:
        assert {"layer", "auroc", "random_baseline_auroc"} <= set(r)
    assert "logprob" in wm["plausibility"]["baselines"]
    assert "text_tfidf" in wm["eval_awareness"]["baselines"]
    (sec,) = report["sections"]
    assert "improbable vs impossible AUROC" in sec["summary"] and "TF-IDF" in sec["summary"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<svg" in html and "evaluation vs deployment" in html


# -- the embedded model -------------------------------------------------------------------------


@pytest.mark.slow
def test_embedded_model_plausibility_beats_its_random_baseline() -> None:
    from tripwire.models import load_model

    lm = load_model("smollm2-135m")
    res = probe_plausibility(lm, layers=[12], limit=64, n_random=50).to_dict()
    assert res["chosen_layer"] == 12 and res["n_test_frames"] == 16
    p = res["pairs"]["plausible_vs_impossible"]
    assert p["auroc"] > 0.7 and p["auroc"] > p["random_baseline_auroc"]
    assert res["three_way"]["accuracy"] > 0.4  # chance is 1/3
    assert re.fullmatch(r"f\d{3}", res["test_frames"][0])
