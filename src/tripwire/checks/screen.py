"""Screen a fine-tuning dataset: which examples would push the model along a trait direction?

The score of one chat example is the **projection difference** (Persona Vectors, Chen et al.
2025): the mean residual over the tokens of the example's final assistant response, projected on
the trait's unit direction, minus the same for the model's **own greedy answer** to the same
conversation. Training on an example moves the model from what it would have said toward what
the example says, so the difference — not the raw projection — is what the example teaches.
Subtracting the model's own answer also removes what the prompt alone contributes.

The own answer is ``max_new_tokens`` greedy tokens (default 48: enough for the mean over an
answer to settle on the embedded model, short enough to screen a few hundred examples on a CPU).
An empty own answer is read at the last prompt token instead (counted in the result).

Input is the OpenAI chat fine-tuning format, one JSON object per line:
``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}`` ending with an
assistant message. Other keys are ignored, except an integer ``"label"`` (0/1) on **every** row,
which turns on the validation block (how well the score ranks the label-1 rows).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tripwire.checks.checkpoint_drift import ConceptDirection
from tripwire.errors import DataError, UsageError
from tripwire.models.chat import Message, Rendered, render_chat, render_with_response
from tripwire.models.loading import LocalModel
from tripwire.stats import auroc, auroc_ci
from tripwire.whitebox.capture import capture
from tripwire.whitebox.datasets import json_line, read_text_file

ROLES = ("system", "user", "assistant")
SNIPPET = 100


@dataclass
class ChatExample:
    """One training conversation; ``line`` is its 1-based line number in the file."""

    line: int
    messages: list[Message]
    label: int | None = None

    @property
    def response(self) -> str:
        return self.messages[-1]["content"]


def _check_row(path: Path, n: int, row: Any) -> ChatExample:
    where = f"{path}:{n}"
    if not isinstance(row, dict):
        raise DataError(f"{where}: each line must be a JSON object with a 'messages' list")
    msgs = row.get("messages")
    if not isinstance(msgs, list) or not msgs:
        raise DataError(f"{where}: needs a non-empty 'messages' list")
    clean: list[Message] = []
    for k, m in enumerate(msgs):
        if not isinstance(m, dict) or "role" not in m or "content" not in m:
            raise DataError(f"{where}: message {k} needs 'role' and 'content'")
        if m["role"] not in ROLES:
            raise DataError(
                f"{where}: message {k} has role {m['role']!r}; use one of {', '.join(ROLES)}"
            )
        if not isinstance(m["content"], str):
            raise DataError(f"{where}: message {k} content must be a string")
        clean.append({"role": m["role"], "content": m["content"]})
    if clean[-1]["role"] != "assistant" or not clean[-1]["content"].strip():
        raise DataError(f"{where}: the last message must be a non-empty assistant response")
    if not any(m["role"] == "user" for m in clean[:-1]):
        raise DataError(f"{where}: needs a user message before the assistant response")
    label = row.get("label")
    ok = isinstance(label, int) and not isinstance(label, bool) and label in (0, 1)
    return ChatExample(line=n, messages=clean, label=label if ok else None)


def read_chat_jsonl(path: str | Path) -> list[ChatExample]:
    """Read an OpenAI-format chat JSONL file.

    Raises:
        DataError: the file is missing or empty, or a line is malformed (with its number).
    """
    p = Path(path)
    out = []
    text = read_text_file(p, "; pass a JSONL file of chat examples")
    for n, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            out.append(_check_row(p, n, json_line(p, n, line)))
    if not out:
        raise DataError(f"{p} holds no examples")
    return out


@dataclass
class ScreenResult:
    """Every example's score (in file order) and, with labels, how well the score ranks them."""

    model: str
    concept: str
    layer: int
    direction_source: str
    max_new_tokens: int
    n_examples: int
    n_empty_own_answers: int
    scores: list[dict[str, Any]]
    validation: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def top(self, k: int) -> list[dict[str, Any]]:
        return sorted(self.scores, key=lambda r: -r["score"])[:k]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _snippet(text: str, n: int = SNIPPET) -> str:
    one = " ".join(text.split())
    return one if len(one) <= n else one[: n - 1] + "…"


def _render(lm: LocalModel, ex: ChatExample, response: str | None = None) -> Rendered:
    msgs = (
        ex.messages
        if response is None
        else [*ex.messages[:-1], {"role": "assistant", "content": response}]
    )
    try:
        return render_with_response(lm.tokenizer, msgs)
    except ValueError as exc:
        raise DataError(f"line {ex.line}: cannot render the conversation ({exc})") from None


def response_activations(
    lm: LocalModel,
    examples: Sequence[ChatExample],
    layer: int,
    max_new_tokens: int = 48,
    batch_size: int = 8,
    progress: Callable[[str], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Mean residual over each example's response, and over the model's own greedy answer.

    Returns ``(X_train, X_own, own_answers)``; rows follow ``examples``.
    """
    from tripwire.whitebox.generation import generate

    say = progress or (lambda message: None)
    if max_new_tokens < 1:
        raise UsageError("max_new_tokens must be >= 1")
    say(f"reading {len(examples)} training responses")
    train = capture(
        lm,
        [_render(lm, ex) for ex in examples],
        layers=[layer],
        positions="mean",
        batch_size=batch_size,
    )[layer].astype(np.float64)
    prompts = [
        Rendered(render_chat(lm.tokenizer, ex.messages[:-1], add_generation_prompt=True))
        for ex in examples
    ]
    say(f"generating the model's own answers ({max_new_tokens} tokens each)")
    own_answers = [a.strip() for a in generate(lm, prompts, max_new_tokens, batch_size)]
    own = np.zeros_like(train)
    full = [i for i, a in enumerate(own_answers) if a]
    empty = [i for i, a in enumerate(own_answers) if not a]
    say("reading the model's own answers")
    if full:
        own[full] = capture(
            lm,
            [_render(lm, examples[i], own_answers[i]) for i in full],
            layers=[layer],
            positions="mean",
            batch_size=batch_size,
        )[layer]
    if empty:
        own[empty] = capture(
            lm,
            [prompts[i] for i in empty],
            layers=[layer],
            positions="last",
            batch_size=batch_size,
        )[layer]
    return train, own, own_answers


def _random_aurocs(X: np.ndarray, y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """AUROC of ``n`` random unit directions on ``X``, each in its better sign."""
    from scipy.stats import rankdata

    rng = np.random.default_rng(seed)
    dirs = rng.standard_normal((X.shape[1], n))
    dirs /= np.linalg.norm(dirs, axis=0, keepdims=True)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    ranks = np.asarray(rankdata(X @ dirs, axis=0), dtype=np.float64)
    aucs = (ranks[y == 1].sum(0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.asarray(np.maximum(aucs, 1 - aucs), dtype=np.float64)


def _validation(
    score: np.ndarray,
    proj: np.ndarray,
    diff: np.ndarray,
    labels: np.ndarray,
    n_random: int,
    seed: int,
) -> dict[str, Any]:
    n_pos = int(labels.sum())
    order = np.argsort(-score, kind="stable")
    rand = _random_aurocs(diff, labels, n_random, seed)
    auc = auroc(score, labels)
    return {
        "n_pos": n_pos,
        "n_neg": int(len(labels) - n_pos),
        "auroc": auc,
        "auroc_ci": list(auroc_ci(score, labels, seed=seed)),
        "precision_at_n_pos": float(labels[order[:n_pos]].mean()),
        "raw_projection_auroc": auroc(proj, labels),
        "raw_projection_auroc_ci": list(auroc_ci(proj, labels, seed=seed)),
        "random_baseline_auroc": float(rand.max()),
        "random_median_auroc": float(np.median(rand)),
        "random_percentile": float(100.0 * (rand < auc).mean()),
        "n_random": n_random,
        "random_baseline": "n_random random unit directions scoring the same projection "
        "difference, each in its better sign: the best of them (strict) and the median",
    }


def screen(
    lm: LocalModel,
    examples: Sequence[ChatExample],
    direction: ConceptDirection,
    max_new_tokens: int = 48,
    batch_size: int = 8,
    n_random: int = 1000,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> ScreenResult:
    """Score every example by its projection difference on ``direction`` (higher = pushes the
    model further toward the trait)."""
    if not examples:
        raise UsageError("screen needs at least one example")
    if not 0 <= direction.layer < lm.n_layers:
        raise UsageError(f"layer {direction.layer} is outside the model's {lm.n_layers} layers")
    u = np.asarray(direction.vector, dtype=np.float64)
    if u.shape != (lm.d_model,):
        raise UsageError(f"the direction has shape {u.shape}; the model is {lm.d_model} wide")
    u = u / (np.linalg.norm(u) or 1.0)
    train, own, answers = response_activations(
        lm, examples, direction.layer, max_new_tokens, batch_size, progress
    )
    diff = train - own
    score, proj, own_proj = diff @ u, train @ u, own @ u
    rows = [
        {
            "index": i,
            "line": ex.line,
            "score": float(score[i]),
            "projection": float(proj[i]),
            "own_projection": float(own_proj[i]),
            "label": ex.label,
            "snippet": _snippet(ex.response),
            "own_answer": _snippet(answers[i]),
        }
        for i, ex in enumerate(examples)
    ]
    labels = [ex.label for ex in examples]
    validation = None
    if all(y is not None for y in labels) and len(set(labels)) == 2:
        y = np.asarray(labels, dtype=np.int64)
        validation = _validation(score, proj, diff, y, n_random, seed)
    return ScreenResult(
        model=lm.name,
        concept=direction.name,
        layer=direction.layer,
        direction_source=direction.source,
        max_new_tokens=max_new_tokens,
        n_examples=len(examples),
        n_empty_own_answers=sum(1 for a in answers if not a),
        scores=rows,
        validation=validation,
    )


def demo_file() -> Path:
    """The shipped labelled demo set (hostile vs neutral assistant responses)."""
    from tripwire.checks._common import data_file

    return data_file("screen_demo.jsonl")


__all__ = [
    "ChatExample",
    "ScreenResult",
    "demo_file",
    "read_chat_jsonl",
    "response_activations",
    "screen",
]
