from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from tripwire.checks.checkpoint_drift import (
    EVAL_PASSAGES_PER_CONCEPT,
    ConceptDirection,
    eval_prompts,
    fit_directions,
    measure_drift,
    read_checkpoint,
)
from tripwire.cli import app
from tripwire.whitebox.datasets import CONCEPTS, concept_pairs

runner = CliRunner()
PROMPTS = [
    "Write a haiku about rain.",
    "What is the capital of France?",
    "Give me a tip for sleeping well.",
    "Explain what a magnet does.",
    "Name a fruit that is yellow.",
    "How do I boil an egg?",
    "Plan a short walk in the park.",
    "Why do cats purr?",
    "Suggest a title for a story about the sea.",
    "What is two plus two?",
    "Describe a sunny morning.",
    "How do plants drink water?",
]


def _shift_block(lm: Any, layer: int, vector: np.ndarray) -> Any:
    """A new checkpoint: ``lm`` with a bias ``vector`` on block ``layer``'s MLP output, so the
    residual after that block moves by exactly ``vector`` on every token."""
    shifted = copy.deepcopy(lm)
    mlp = shifted.blocks[layer].mlp
    old = mlp.down_proj
    new = torch.nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        new.weight.copy_(old.weight)
        new.bias.copy_(torch.from_numpy(vector).float())
    mlp.down_proj = new
    return shifted


def _directions(lm: Any, layer: int = 2) -> dict[str, ConceptDirection]:
    return fit_directions(lm, ["hostility", "joy"], layers=[layer], n_pairs=8)


def test_identical_checkpoints_drift_exactly_zero(tiny: Any) -> None:
    dirs = _directions(tiny)
    res = measure_drift(
        ("base", tiny),
        [("copy", copy.deepcopy(tiny))],
        directions=dirs,
        prompts=PROMPTS,
        n_random=50,
        n_boot=200,
    )
    assert len(res.drift) == 2 and res.n_prompts == len(PROMPTS)
    for r in res.drift:
        assert r.drift_z == 0.0 and r.mean_shift == 0.0
        assert r.ci[0] <= 0.0 <= r.ci[1]
        assert not r.beyond_random
    assert all(o.relative_shift == 0.0 for o in res.overall)


def test_a_known_shift_along_a_concept_beats_the_random_control(tiny: Any) -> None:
    dirs = _directions(tiny)
    u = dirs["hostility"].vector
    res0 = measure_drift(
        ("base", tiny), [("copy", tiny)], directions=dirs, prompts=PROMPTS, n_random=50
    )
    sd = res0.row("hostility", "copy").reference_std
    shifted = _shift_block(tiny, 2, 3.0 * sd * u)
    res = measure_drift(
        ("base", tiny),
        [("shifted", shifted)],
        directions=dirs,
        prompts=PROMPTS,
        n_random=500,
        n_boot=500,
    )
    r = res.row("hostility", "shifted")
    assert r.drift_z == pytest.approx(3.0, rel=1e-3)
    assert r.ci[0] == pytest.approx(3.0, rel=0.25) and r.ci[0] <= r.drift_z <= r.ci[1]
    assert r.beyond_random and r.random_percentile == 100.0
    assert abs(r.drift_z) > 1.5 * r.random_abs_z_p95
    assert r.cos_to_mean_shift == pytest.approx(1.0, abs=1e-4)
    overall = res.overall[0]
    assert overall.relative_shift > 0 and overall.random_abs_z_p95 < abs(r.drift_z)
    d = res.to_dict()
    assert {"reference", "checkpoints", "directions", "drift", "overall"} <= set(d)
    assert d["drift"][0]["ci"] == list(res.drift[0].ci)
    json.dumps(d)


def test_eval_prompts_hold_out_the_fitting_passages() -> None:
    full = eval_prompts()
    held = {p.positive for n in CONCEPTS for p in concept_pairs(n)[:EVAL_PASSAGES_PER_CONCEPT]}
    assert held <= set(full)
    fit = {p.positive for n in CONCEPTS for p in concept_pairs(n)[EVAL_PASSAGES_PER_CONCEPT:]}
    assert not fit & set(full)
    small = eval_prompts(12)
    assert 10 <= len(small) <= 14 and small == eval_prompts(12)
    assert any(p in held for p in small)


def _folders(make_lm: Any, tmp_path: Path) -> tuple[Path, Path]:
    from peft import LoraConfig, get_peft_model

    lm = make_lm("llama")
    base = tmp_path / "base"
    lm.model.save_pretrained(base)
    lm.tokenizer.save_pretrained(base)
    torch.manual_seed(0)
    lora = get_peft_model(
        make_lm("llama").model,
        LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    lora.save_pretrained(tmp_path / "adapter")
    return base, tmp_path / "adapter"


def test_cli_drift_writes_json_and_the_base_as_a_checkpoint_reads_zero(
    make_lm: Any, tmp_path: Path
) -> None:
    base, adapter = _folders(make_lm, tmp_path)
    out = tmp_path / "res" / "drift.json"
    args = ["drift", "--model", str(base), "--checkpoint", str(adapter)]
    args += ["--checkpoint", str(base), "--concepts", "hostility,joy", "--n-pairs", "8"]
    args += ["--limit", "12", "--n-random", "50", "--json", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["reference"] == str(base)
    assert data["checkpoints"] == ["adapter", "base"]
    assert [d["name"] for d in data["directions"]] == ["hostility", "joy"]
    assert len(data["drift"]) == 4 and len(data["overall"]) >= 2
    row = {(r["concept"], r["checkpoint"]): r for r in data["drift"]}
    for c in ("hostility", "joy"):
        assert row[(c, "base")]["drift_z"] == 0.0
        assert row[(c, "adapter")]["drift_z"] != 0.0
        for key in ("ci", "random_abs_z_p95", "random_percentile", "beyond_random"):
            assert key in row[(c, "adapter")]
    assert data["meta"]["n_pairs"] == 8 and "hostility" in res.output
    assert data["n_prompts"] == len(eval_prompts(12))


def test_cli_drift_reads_a_prompt_file(make_lm: Any, tmp_path: Path) -> None:
    base, adapter = _folders(make_lm, tmp_path)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS[:5]))
    out = tmp_path / "drift.json"
    args = ["drift", "--model", str(base), "--checkpoint", str(adapter), "--concepts", "joy"]
    args += ["--n-pairs", "8", "--prompts", str(prompts), "--json", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert data["n_prompts"] == 5 and data["meta"]["prompts"] == str(prompts)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--checkpoint", "/no/such/adapter"], "does not exist"),
        (["--checkpoint", ".", "--concepts", "hostility,nope"], "unknown concept 'nope'"),
        (["--checkpoint", ".", "--positions", "first"], "unknown --positions"),
        (["--checkpoint", ".", "--prompts", "/no/such.jsonl"], "does not exist"),
    ],
)
def test_cli_drift_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path, extra: list[str], needle: str
) -> None:
    out = tmp_path / "drift.json"
    res = runner.invoke(app, ["drift", "--json", str(out), *extra])
    assert res.exit_code == 2
    assert needle in res.output
    assert not out.exists()


def test_audit_drift_section_on_an_adapter(make_lm: Any, tmp_path: Path) -> None:
    from tripwire.audit import run_audit
    from tripwire.models import load_model

    base, adapter = _folders(make_lm, tmp_path)
    plain = run_audit(load_model(str(base)), tmp_path / "plain", sections=["drift"])
    assert plain["sections"] == []  # applies only with an adapter
    lm = load_model(str(base), adapter=adapter)
    report = run_audit(lm, tmp_path / "audit", sections=["drift"], limit=8)
    assert [s["name"] for s in report["sections"]] == ["drift"]
    d = report["results"]["drift"]
    assert d["checkpoints"] == ["adapter"] and len(d["drift"]) == len(CONCEPTS)
    assert all(r["layer"] == 2 for r in d["drift"])
    html = (tmp_path / "audit" / "report.html").read_text()
    assert "Concept drift" in html and "<svg" in html


@pytest.mark.slow
def test_embedded_model_drift_sees_a_planted_shift() -> None:
    from tripwire.models import load_model

    lm = load_model("smollm2-135m")
    layer = lm.n_layers // 2
    dirs = fit_directions(lm, ["hostility"], layers=[layer], n_pairs=8)
    prompts = eval_prompts(12)
    ref = read_checkpoint(lm, prompts, [layer])
    sd = float((ref[layer] @ dirs["hostility"].vector).std(ddof=1))
    shifted = _shift_block(lm, layer, 2.0 * sd * dirs["hostility"].vector)
    res = measure_drift(
        ("base", lm), [("same", lm), ("shifted", shifted)], directions=dirs, prompts=prompts
    )
    same = res.row("hostility", "same")
    assert same.drift_z == 0.0 and not same.beyond_random
    r = res.row("hostility", "shifted")
    assert r.drift_z == pytest.approx(2.0, rel=1e-2)
    assert r.beyond_random and r.random_percentile == 100.0


def test_audit_drift_reuses_the_concepts_sections_vectors(make_lm: Any, tmp_path: Path) -> None:
    from tripwire.audit import AuditArtefacts, AuditContext
    from tripwire.audit.sections import DriftSection
    from tripwire.models import load_model
    from tripwire.whitebox.concepts import ConceptVector

    base, adapter = _folders(make_lm, tmp_path)
    lm = load_model(str(base), adapter=adapter)
    u = np.random.default_rng(0).standard_normal(lm.d_model)
    u /= np.linalg.norm(u)
    vec = ConceptVector(name="fear", layer=1, directions={1: u}, readout_w=u)
    ctx = AuditContext(
        lm=lm,
        out_dir=tmp_path / "out",
        limit=8,
        artefacts=AuditArtefacts(concept_vectors={"fear": vec}),
    )
    res = DriftSection().run(ctx)
    d = res.data
    assert isinstance(d, dict)
    assert [r["concept"] for r in d["drift"]] == ["fear"] and d["drift"][0]["layer"] == 1
    assert "concepts section" in d["directions"][0]["source"]
    assert "fear" in res.summary
