"""Single sections run on their own: what they say about where their inputs came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tripwire.audit import AuditArtefacts, AuditContext, run_audit
from tripwire.audit.sections import ConceptsSection


def _eval(name: str, layer: int) -> Any:
    from tripwire.whitebox.concepts import ConceptEval

    per_layer = [{"layer": k, "cv_auroc": 0.9, "test_auroc": 0.9} for k in range(6)]
    return ConceptEval(name, layer, 0.97, (0.9, 1.0), 0.6, 0.95, 40, 24, per_layer)


def test_concepts_read_in_the_first_blocks_are_flagged_possibly_lexical(tmp_path: Path) -> None:
    from tripwire.whitebox.datasets import CONCEPTS

    layers = {"desperation": 0, "calm": 1, "fear": 2}
    evals = {n: _eval(n, layers.get(n, 5)) for n in CONCEPTS}
    ctx = AuditContext(
        lm=None,  # type: ignore[arg-type]
        out_dir=tmp_path,
        artefacts=AuditArtefacts(concept_evals=evals),
    )
    res = ConceptsSection().run(ctx)
    data = res.data
    assert isinstance(data, dict)
    assert data["possibly_lexical"] == ["desperation", "calm"]
    flags = {c["name"]: c["possibly_lexical"] for c in data["concepts"]}
    assert flags["desperation"] and flags["calm"] and not flags["fear"] and not flags["joy"]
    assert (data["passed"], data["total"], data["bar"]) == (12, 12, 0.95)
    assert "possibly lexical" in res.summary and "desperation, calm" in res.summary
    assert res.html.count("<b>possibly lexical</b>") == 2
    assert "<b>Possibly lexical</b>: desperation, calm are read in the first 2 blocks" in res.html


def test_concepts_summary_says_nothing_of_lexical_when_none_is_early(tmp_path: Path) -> None:
    from tripwire.whitebox.datasets import CONCEPTS

    evals = {n: _eval(n, 3) for n in CONCEPTS}
    ctx = AuditContext(
        lm=None,  # type: ignore[arg-type]
        out_dir=tmp_path,
        artefacts=AuditArtefacts(concept_evals=evals),
    )
    res = ConceptsSection().run(ctx)
    assert isinstance(res.data, dict) and res.data["possibly_lexical"] == []
    assert "lexical" not in res.summary and "lexical" not in res.html


def test_steering_alone_extracts_only_its_concept_and_says_so(tiny: Any, tmp_path: Path) -> None:
    report = run_audit(tiny, tmp_path / "out", sections=["steering"])
    steering = report["results"]["steering"]
    assert steering["concept"] == "joy"
    assert steering["vector_source"] == "extracted for this section (joy only)"
    (sec,) = report["sections"]
    assert sec["summary"].endswith("(joy extracted alone: the concepts section did not run)")
    saved = sorted(p.name for p in (tmp_path / "out" / "vectors").iterdir())
    assert {n for n in saved if not n.endswith(".gguf")} == {"joy.json", "joy.safetensors"}
    assert json.loads((tmp_path / "out" / "vectors" / "joy.json").read_text())["name"] == "joy"
    assert "extracted for this section (joy only)" in (tmp_path / "out" / "report.html").read_text()
