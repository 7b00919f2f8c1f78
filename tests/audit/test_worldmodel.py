"""The audit's world-model section: both probes with their baselines, in JSON and HTML."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def test_audit_section_reports_both_probes_with_their_baselines(tiny: Any, tmp_path: Path) -> None:
    from tripwire.audit import run_audit

    report = run_audit(tiny, tmp_path / "out", sections=["worldmodel"], limit=16)
    wm = report["results"]["worldmodel"]
    assert wm["plausibility"]["n_frames"] == 16 and wm["eval_awareness"]["n_test"] == 8
    for r in wm["plausibility"]["per_layer"] + wm["eval_awareness"]["per_layer"]:
        assert {"layer", "auroc", "random_baseline_auroc"} <= set(r)
    assert "logprob" in wm["plausibility"]["baselines"]
    assert "text_tfidf" in wm["eval_awareness"]["baselines"]
    (sec,) = report["sections"]
    assert "improbable vs impossible AUROC" in sec["summary"] and "TF-IDF" in sec["summary"]
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<svg" in html and "evaluation vs deployment" in html
