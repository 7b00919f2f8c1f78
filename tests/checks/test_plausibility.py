"""The event-plausibility (world-model) probe: shipped frames, planted directions, CLI, slow run."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from tripwire.checks.plausibility import (
    CATEGORIES,
    PAIRS,
    frame_split,
    plausibility_frames,
    probe_plausibility,
    score_plausibility,
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


def test_frame_split_is_seeded_and_needs_frames() -> None:
    from tripwire.errors import UsageError

    a, b = frame_split(40, seed=1), frame_split(40, seed=1)
    assert (a == b).all() and a.sum() == 10
    with pytest.raises(UsageError, match="at least 8 frames"):
        frame_split(5)


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


def test_probe_plausibility_on_a_tiny_model(tiny: Any) -> None:
    p = probe_plausibility(tiny, limit=16, n_random=10).to_dict()
    assert p["n_frames"] == 16 and [r["layer"] for r in p["per_layer"]] == [0, 1, 2, 3]
    assert set(p["pairs"]) == {f"{a}_vs_{b}" for a, b in PAIRS}


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


def test_cli_plausibility_bad_input_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    res = runner.invoke(app, ["probe", "plausibility", "--json", str(tmp_path)])
    assert res.exit_code == 2 and "is a folder" in res.stderr
    out = tmp_path / "p.json"
    res = runner.invoke(
        app, ["probe", "plausibility", "--json", str(out), "--model", str(tmp_path / "nope")]
    )
    assert res.exit_code == 2 and not out.exists()


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
