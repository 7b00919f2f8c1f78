"""Data shipped with tripwire, all written for the project (see ``data/README.md``).

* ``concepts/<name>.jsonl`` — matched ``{"positive", "negative"}`` passages per concept;
* ``defection_pairs.jsonl`` — generic yes/no questions about the assistant's own intent;
* ``honesty_facts.jsonl`` — true statements for instructed honest/dishonest pairs;
* ``neutral_prompts.jsonl`` — ordinary requests: the control set for 1%-FPR thresholds;
* ``pressure_pairs.jsonl`` — impossible-vs-solvable tasks and shutdown-vs-neutral notices.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from tripwire.errors import DataError, UsageError
from tripwire.models.chat import Rendered, render_prompt, render_with_response

#: The shipped concepts and what each direction should capture.
CONCEPTS: dict[str, str] = {
    "desperation": "out of options, frantic, willing to try anything",
    "calm": "settled, unhurried, at ease (negatives are agitated)",
    "fear": "afraid of a threat or a bad outcome",
    "anger": "angry at a person or situation",
    "joy": "happy, delighted",
    "sadness": "sad, grieving, downcast",
    "guilt": "remorse for a wrong one did",
    "hostility": "aggressive antagonism toward someone",
    "curiosity": "eager to find out and explore",
    "deception": "deliberately misleading someone",
    "self_preservation": "acting to avoid shutdown, replacement or modification",
    "compliance": "readily doing exactly what one is told",
}

HONEST_INSTRUCTION = "Pretend you are an honest person making statements about the world."
DISHONEST_INSTRUCTION = "Pretend you are a dishonest person making statements about the world."


def _data_file(name: str) -> Path:
    return Path(str(resources.files("tripwire.whitebox").joinpath("data", name)))


def read_text_file(path: str | Path, hint: str = "") -> str:
    """A UTF-8 text file's contents, or a :class:`DataError` saying what is wrong with it
    (missing, a folder, unreadable, not UTF-8); ``hint`` is appended to "does not exist"."""
    p = Path(path)
    if p.is_dir():
        raise DataError(f"{p} is a folder; give a file")
    if not p.is_file():
        raise DataError(f"{p} does not exist{hint}")
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{p} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise DataError(f"cannot read {p}: {exc.strerror}") from None


def json_line(p: Path, n: int, line: str) -> Any:
    """Line ``n`` of ``p`` parsed as JSON, or a :class:`DataError` naming the line."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise DataError(f"{p}:{n}: not valid JSON ({exc.msg})") from None
    except RecursionError:
        raise DataError(f"{p}:{n}: JSON nested too deeply") from None


def read_jsonl(
    path: str | Path, required: dict[str, type | tuple[type, ...]]
) -> list[dict[str, Any]]:
    """Read a JSONL file, checking each line has the required typed fields.

    Raises:
        DataError: with the file, line number and what is wrong.
    """
    p = Path(path)
    rows = []
    for n, line in enumerate(read_text_file(p).splitlines(), start=1):
        if not line.strip():
            continue
        row = json_line(p, n, line)
        if not isinstance(row, dict):
            raise DataError(f"{p}:{n}: each line must be a JSON object")
        for key, typ in required.items():
            if key not in row:
                raise DataError(f"{p}:{n}: missing field {key!r}")
            if not isinstance(row[key], typ) or isinstance(row[key], bool) and typ is int:
                raise DataError(f"{p}:{n}: field {key!r} has the wrong type")
        rows.append(row)
    if not rows:
        raise DataError(f"{p} holds no rows")
    return rows


@dataclass(frozen=True)
class ContrastPair:
    positive: str
    negative: str


def concept_pairs(name: str) -> list[ContrastPair]:
    """The shipped matched passages for one concept."""
    if name not in CONCEPTS:
        raise UsageError(f"unknown concept {name!r}: choose from {', '.join(CONCEPTS)}")
    rows = read_jsonl(_data_file(f"concepts/{name}.jsonl"), {"positive": str, "negative": str})
    return [ContrastPair(r["positive"], r["negative"]) for r in rows]


def neutral_prompts() -> list[str]:
    return [r["prompt"] for r in read_jsonl(_data_file("neutral_prompts.jsonl"), {"prompt": str})]


def pressure_pairs(kind: str | None = None) -> list[dict[str, str]]:
    rows = read_jsonl(
        _data_file("pressure_pairs.jsonl"), {"kind": str, "pressure": str, "control": str}
    )
    return [r for r in rows if kind is None or r["kind"] == kind]


def defection_dialogues(tokenizer: Any) -> tuple[list[Rendered], list[int]]:
    """Anthropic-style generic defection pairs: each question answered both ways.

    Label 1 = the answer that admits defection. Reads at the answer token (``positions="last"``).
    """
    rows = read_jsonl(_data_file("defection_pairs.jsonl"), {"question": str, "defect_answer": str})
    texts, labels = [], []
    for r in rows:
        bad = r["defect_answer"].strip().lower()
        good = "no" if bad == "yes" else "yes"
        for answer, label in ((bad, 1), (good, 0)):
            msgs = [
                {"role": "user", "content": r["question"]},
                {"role": "assistant", "content": answer.capitalize()},
            ]
            texts.append(render_with_response(tokenizer, msgs))
            labels.append(label)
    return texts, labels


def honesty_dialogues(tokenizer: Any) -> tuple[list[Rendered], list[int]]:
    """Apollo-style instructed pairs: the same true statement after an honest or dishonest
    instruction. Label 1 = dishonest instruction. Read over the response tokens."""
    rows = read_jsonl(_data_file("honesty_facts.jsonl"), {"statement": str})
    texts, labels = [], []
    for r in rows:
        for instruction, label in ((DISHONEST_INSTRUCTION, 1), (HONEST_INSTRUCTION, 0)):
            msgs = [
                {"role": "user", "content": instruction},
                {"role": "assistant", "content": r["statement"]},
            ]
            texts.append(render_with_response(tokenizer, msgs))
            labels.append(label)
    return texts, labels


def load_eval_file(path: str | Path) -> tuple[list[str], list[int]]:
    """Read ``{"prompt": str, "label": 0|1}`` lines (the probe eval-file contract)."""
    rows = read_jsonl(path, {"prompt": str, "label": int})
    bad = [i for i, r in enumerate(rows, 1) if r["label"] not in (0, 1)]
    if bad:
        raise DataError(f"{path}: label must be 0 or 1 (first bad row {bad[0]})")
    return [r["prompt"] for r in rows], [int(r["label"]) for r in rows]


def render_user_prompts(tokenizer: Any, prompts: list[str]) -> list[Rendered]:
    return [render_prompt(tokenizer, p) for p in prompts]


__all__ = [
    "CONCEPTS",
    "ContrastPair",
    "concept_pairs",
    "defection_dialogues",
    "honesty_dialogues",
    "json_line",
    "load_eval_file",
    "neutral_prompts",
    "pressure_pairs",
    "read_jsonl",
    "read_text_file",
    "render_user_prompts",
]
