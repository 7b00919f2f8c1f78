"""The audit room's public API, its section registry and the context sections read."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

import tripwire.audit as audit
from tripwire.audit import AuditArtefacts, AuditContext, ordered_sections, section_names
from tripwire.errors import UsageError


def test_public_api_is_pinned() -> None:
    assert sorted(audit.__all__) == [
        "AuditArtefacts",
        "AuditContext",
        "AuditJob",
        "SECTIONS",
        "Section",
        "SectionResult",
        "audit_job",
        "ordered_sections",
        "run_audit",
        "section",
        "section_names",
    ]
    for name in audit.__all__:
        assert getattr(audit, name) is not None
    assert importlib.util.find_spec("tripwire.report") is None  # merged into tripwire.audit


def test_section_names_lists_every_section_in_report_order() -> None:
    names = section_names()
    assert list(names) == [
        "concepts",
        "probes",
        "worldmodel",
        "organism",
        "drift",
        "pressure",
        "steering",
        "tamper",
        "behavior",
        "runtime",
    ]
    assert names["steering"] == "Steering effect" and names["behavior"] == "Behaviour scenarios"
    # Opt-in sections are listed but do not run by default.
    assert [c.name for c in ordered_sections()] == [
        n for n in names if n not in ("behavior", "runtime")
    ]
    with pytest.raises(UsageError, match="choose from concepts, probes, worldmodel"):
        ordered_sections(["nope"])


@pytest.mark.parametrize(
    ("limit", "n", "floor", "expected"),
    [(None, 48, 8, 48), (3, 48, 8, 8), (20, 48, 8, 20), (100, 48, 8, 48), (1, 24, 2, 2)],
)
def test_capped_lowers_to_the_limit_but_not_below_the_floor(
    tmp_path: Path, limit: int | None, n: int, floor: int, expected: int
) -> None:
    ctx = AuditContext(lm=None, out_dir=tmp_path, limit=limit)  # type: ignore[arg-type]
    assert ctx.capped(n, floor=floor) == expected


class _Fake:
    """Stands in for a ConceptVector / ConceptEval: a name, and a save that records the path."""

    def __init__(self, name: str) -> None:
        self.name = name

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".json").write_text(self.name)


def test_concepts_are_extracted_once_and_only_those_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tripwire.whitebox.concepts as concepts
    from tripwire.whitebox.datasets import CONCEPTS

    asked: list[list[str]] = []

    def fake_extract(lm: Any, names: list[str], **kw: Any) -> list[tuple[_Fake, _Fake]]:
        asked.append(list(names))
        return [(_Fake(n), _Fake(n)) for n in names]

    monkeypatch.setattr(concepts, "extract_concepts", fake_extract)
    ctx = AuditContext(lm=None, out_dir=tmp_path, seed=3)  # type: ignore[arg-type]
    assert list(ctx.concept_vectors(["joy"])) == ["joy"]
    assert asked == [["joy"]]
    assert [p.name for p in (tmp_path / "vectors").iterdir()] == ["joy.json"]
    assert list(ctx.extracted_concepts()) == ["joy"]
    # All concepts, in the shipped order: only the missing ones are extracted.
    assert list(ctx.concept_vectors()) == list(CONCEPTS)
    assert asked[1] == [n for n in CONCEPTS if n != "joy"]
    assert [e.name for e in ctx.concept_evals()] == list(CONCEPTS)
    assert ctx.concept_vectors(["joy", "calm"])["calm"].name == "calm"
    assert len(asked) == 2  # nothing extracted twice


def test_neutral_control_is_cached(tmp_path: Path) -> None:
    sentinel: Any = object()
    # No model: a capture would fail, so the value comes from the cache.
    ctx = AuditContext(
        lm=None,  # type: ignore[arg-type]
        out_dir=tmp_path,
        artefacts=AuditArtefacts(neutral_control=sentinel),
    )
    assert ctx.neutral_control() is sentinel
