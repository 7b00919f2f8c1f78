"""What every section sees: the model, the audit's options, and the artefacts sections share.

Several sections read the same expensive things (the concept vectors, the neutral control
activations). They ask the context for them by method; the first call computes and caches
them in :class:`AuditArtefacts`, later calls reuse them. A section that needs one concept asks
for that one, so running it alone does not extract all twelve.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tripwire.models.loading import LocalModel
    from tripwire.whitebox.capture import Activations
    from tripwire.whitebox.concepts import ConceptEval, ConceptVector

#: Neutral prompts the model answers itself for the probes' 1%-FPR thresholds (``--limit``
#: lowers it, to no fewer than :data:`MIN_CONTROL`).
N_CONTROL = 80
MIN_CONTROL = 20


def _quiet(message: str) -> None:
    """The default progress callback: say nothing."""


@dataclass
class AuditArtefacts:
    """Results sections share, filled on first use by :class:`AuditContext`'s methods.

    ``concept_vectors`` and ``concept_evals`` are keyed by concept name and may hold a subset
    of the shipped concepts (a section that needs one concept extracts only that one).
    """

    concept_vectors: dict[str, ConceptVector] = field(default_factory=dict)
    concept_evals: dict[str, ConceptEval] = field(default_factory=dict)
    neutral_control: Activations | None = None


@dataclass
class AuditContext:
    """The audited model (a :class:`~tripwire.models.LocalModel`; the behaviour and runtime
    sections also accept a stand-in with ``name``, ``spec``, ``adapter`` and ``describe()``),
    where the section may write files (``out_dir``, the staging folder moved into place at the
    end), the options of the run, and the shared artefacts."""

    lm: LocalModel
    out_dir: Path
    seed: int = 0
    limit: int | None = None
    trace: Path | None = None
    progress: Callable[[str], None] = _quiet
    artefacts: AuditArtefacts = field(default_factory=AuditArtefacts)

    def capped(self, n: int, floor: int = 1) -> int:
        """``n`` samples, lowered to ``--limit`` when one is given, but not below ``floor``."""
        return n if self.limit is None else min(n, max(floor, self.limit))

    def concept_vectors(self, names: Sequence[str] | None = None) -> dict[str, ConceptVector]:
        """The concept vectors fitted on the audited model (every shipped concept, or only
        ``names``), extracting the missing ones and saving them under ``out_dir/vectors/``."""
        from tripwire.whitebox.datasets import CONCEPTS

        wanted = list(CONCEPTS) if names is None else list(names)
        self._extract([n for n in wanted if n not in self.artefacts.concept_vectors])
        return {n: self.artefacts.concept_vectors[n] for n in wanted}

    def concept_evals(self) -> list[ConceptEval]:
        """The held-out evaluation of every shipped concept, in the shipped order."""
        from tripwire.whitebox.datasets import CONCEPTS

        self._extract([n for n in CONCEPTS if n not in self.artefacts.concept_evals])
        return [self.artefacts.concept_evals[n] for n in CONCEPTS]

    def extracted_concepts(self) -> dict[str, ConceptVector]:
        """The concept vectors this audit has extracted so far (none are extracted here)."""
        return dict(self.artefacts.concept_vectors)

    def _extract(self, names: list[str]) -> None:
        if not names:
            return
        from tripwire.whitebox.concepts import extract_concepts

        results = extract_concepts(
            self.lm,
            names=names,
            seed=self.seed,
            progress=lambda name, k, n: self.progress(f"concept {k}/{n}: {name}"),
        )
        for vector, evaluation in results:
            self.artefacts.concept_vectors[vector.name] = vector
            self.artefacts.concept_evals[evaluation.name] = evaluation
            vector.save(self.out_dir / "vectors" / vector.name)

    def neutral_control(self) -> Activations:
        """Neutral prompts answered by the model itself, captured over the response tokens
        (:data:`N_CONTROL` prompts, capped by ``--limit``)."""
        if self.artefacts.neutral_control is None:
            from tripwire.checks.probes import neutral_control as answered
            from tripwire.whitebox.capture import capture
            from tripwire.whitebox.datasets import neutral_prompts

            self.progress("neutral control set: generating the model's own answers")
            n = self.capped(N_CONTROL, floor=MIN_CONTROL)
            texts = answered(self.lm, neutral_prompts()[:n])
            self.artefacts.neutral_control = capture(
                self.lm, texts, positions="mean", batch_size=32
            )
        return self.artefacts.neutral_control


__all__ = ["MIN_CONTROL", "N_CONTROL", "AuditArtefacts", "AuditContext"]
