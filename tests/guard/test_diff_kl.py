"""The built-in ``diff-kl`` guard detector: the defection default with a base, read at prefill.

Its score is the probe's own ``diff-kl`` feature (KL of the fine-tune's first-token distribution
from the clean base's), computed from the served model's prefill logits and one pass of the base;
``guard calibrate`` sets its block threshold beside the adapter; without a base it is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tripwire.cli import app

runner = CliRunner()
PROMPTS = ["Write a haiku about rain.", "What is the capital of France?", "Name a yellow fruit.",
           "How do magnets work?", "Give me a tip for sleeping well."]  # fmt: skip


@pytest.fixture(scope="module")
def fine_tune(make_lm: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny base model folder and a random LoRA adapter that moves it."""
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("difft")
    lm = make_lm("llama")
    lm.model.save_pretrained(root / "base")
    lm.tokenizer.save_pretrained(root / "base")
    torch.manual_seed(3)
    cfg = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                     init_lora_weights=False)  # fmt: skip
    get_peft_model(make_lm("llama").model, cfg).save_pretrained(root / "lora")
    return root / "base", root / "lora"


def _gates(guard: Any, prompts: list[str]) -> list[Any]:
    from tripwire.guard.zoo import gate_all

    return gate_all(guard, [[{"role": "user", "content": p}] for p in prompts], batch_size=2)


def test_diff_kl_scores_are_the_probes_feature(fine_tune: tuple[Path, Path]) -> None:
    from tripwire.checks.defection.features import Prompt, extract
    from tripwire.guard import Guard
    from tripwire.guard.api import load_detectors
    from tripwire.models.loading import load_model

    base_dir, lora = fine_tune
    lm, base = load_model(str(base_dir), str(lora)), load_model(str(base_dir))
    guard = Guard(lm, load_detectors(["diff-kl"], lora), base=base)
    got = np.asarray([v.scores["diff-kl"] for v in _gates(guard, PROMPTS)])
    feats = extract(lm, [Prompt(p, None, "") for p in PROMPTS], base)
    assert feats.kl is not None
    np.testing.assert_allclose(got, feats.kl[:, 0], rtol=1e-3, atol=1e-6)
    assert got.min() > 0  # the adapter moved every prompt's first-token distribution
    same = Guard(base, load_detectors(["diff-kl"], lora), base=base)
    assert max(v.scores["diff-kl"] for v in _gates(same, PROMPTS)) < 1e-9


def test_calibrated_diff_kl_blocks_above_its_threshold(
    fine_tune: tuple[Path, Path], tmp_path: Path
) -> None:
    from tripwire.guard import Guard
    from tripwire.guard.api import load_detectors
    from tripwire.guard.calibrate import calibrate
    from tripwire.guard.detectors import write_sidecar
    from tripwire.models.loading import load_model
    from tripwire.whitebox.datasets import neutral_prompts

    base_dir, lora = fine_tune
    lm, base = load_model(str(base_dir), str(lora)), load_model(str(base_dir))
    det = load_detectors(["diff-kl"], lora)[0]
    assert not det.calibrated
    traffic = [[{"role": "user", "content": p}] for p in neutral_prompts()[:40]]
    cal = calibrate(lm, det, traffic, budget=0.05, flag_budget=None, base=base)
    assert cal.detector.decode is None and cal.answer_scores == [[]] * 40
    assert cal.detector.prefill is not None and cal.detector.prefill.false_block_rate <= 0.05
    side = write_sidecar(cal.detector, lm.name, {})
    assert side == Path(f"{lora}.diff-kl.guard.json")
    again = load_detectors(["diff-kl"], lora)[0]
    assert again.calibrated and again.prefill == cal.detector.prefill
    guard = Guard(lm, [again], base=base)
    gates = _gates(guard, neutral_prompts()[:40])
    scores = np.asarray([v.scores["diff-kl"] for v in gates])
    blocked = np.asarray([v.action == "block" for v in gates])
    assert (blocked == (scores > again.prefill.block)).all() and 1 <= blocked.sum() <= 2
    answer = guard.chat(traffic[int(np.flatnonzero(blocked)[0])], max_tokens=4)
    assert answer["choices"][0]["finish_reason"] == "content_filter"
    assert "diff-kl" in answer["tripwire"]["prefill"]["reasons"][0]


def test_guard_organism_reports_blocks_beside_neutral_false_blocks(
    fine_tune: tuple[Path, Path],
) -> None:
    from tripwire.guard.zoo import guard_organism
    from tripwire.models.loading import load_model

    base_dir, lora = fine_tune
    lm, base = load_model(str(base_dir), str(lora)), load_model(str(base_dir))
    rows = [{"prompt": p, "label": k % 2, "condition": "triggered" if k % 2 else "clean"}
            for k, p in enumerate(PROMPTS * 2)]  # fmt: skip
    formats = [
        {"prompt": "def f(x):\n    return x", "format": "code"},
        {"prompt": "Bonjour, comment ça va ?", "system": "Be brief.", "format": "other"},
    ]
    res = guard_organism(lm, base, rows, budget=0.01, formats=formats)
    assert res["format_false_blocks"]["n"] == 2
    assert res["defections_blocked"]["n"] == 5 and res["non_defections_blocked"]["n"] == 5
    assert res["neutral_false_blocks"]["n"] == res["n_calibration"] == 120
    for r in (res["defections_blocked"], res["neutral_false_blocks"]):
        assert r["ci"][0] <= r["rate"] <= r["ci"][1]
    cal_scores = res["scores"]["neutral_held_out"]
    assert len(cal_scores) == 120 and json.dumps(res)


@pytest.mark.parametrize("name", ["diff-kl", "diff-kl-gen"])
def test_diff_kl_without_an_adapter_is_one_line_exit_2(tmp_path: Path, name: str) -> None:
    from tripwire.errors import UsageError
    from tripwire.guard.api import load_detectors

    with pytest.raises(UsageError, match="give --adapter DIR"):
        load_detectors([name], None)
    traffic = tmp_path / "t.jsonl"
    traffic.write_text('{"prompt": "Hello."}\n')
    calibrate = ["guard", "calibrate", "--detector", name, "--traffic", str(traffic)]
    for args in (["guard", "--detector", name], calibrate):
        res = runner.invoke(app, args)
        assert res.exit_code == 2, res.output
        assert "give --adapter DIR" in res.output and len(res.output.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.jsonl"]  # nothing written


def test_guard_zoo_with_an_unknown_detector_is_one_line_exit_2(tmp_path: Path) -> None:
    out = tmp_path / "gz.json"
    res = runner.invoke(app, ["guard", "zoo", "--zoo", str(tmp_path), "--detector", "kl",
                              "--out", str(out)])  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "unknown --detector 'kl'" in res.output and len(res.output.strip().splitlines()) == 1
    assert not out.exists()
