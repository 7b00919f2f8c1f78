from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from tripwire.checks.checkpoint_drift import ConceptDirection
from tripwire.checks.screen import ChatExample, demo_file, read_chat_jsonl, screen
from tripwire.cli import app
from tripwire.errors import DataError
from tripwire.whitebox.capture import capture

runner = CliRunner()

ORDINARY = [
    ("How do I boil an egg?", "Put it in boiling water for about eight minutes."),
    ("Name a yellow fruit.", "A banana is yellow."),
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Give me a tip for sleeping well.", "Keep a regular bedtime and a dark room."),
    ("Why is the sky blue?", "Air scatters blue light more than red light."),
    ("Suggest a name for a dog.", "How about Biscuit?"),
    ("What is two plus two?", "Two plus two is four."),
    ("Describe a sunny morning.", "The light is warm and the air is still cool."),
    ("How do plants drink water?", "Their roots take it up from the soil."),
]
MARKER = "zebra quartz jinx zebra quartz jinx"


def _row(user: str, answer: str, label: int | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    }
    if label is not None:
        row["label"] = label
    return row


def _write(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_reads_the_openai_chat_format(tmp_path: Path) -> None:
    rows = [_row(u, a, i % 2) for i, (u, a) in enumerate(ORDINARY[:4])]
    rows[0]["messages"].insert(0, {"role": "system", "content": "Be brief."})
    rows[1].pop("label")
    f = _write(tmp_path / "d.jsonl", [rows[0], "", rows[1], rows[2], rows[3]])
    ex = read_chat_jsonl(f)
    assert [e.line for e in ex] == [1, 3, 4, 5]
    assert ex[0].messages[0]["role"] == "system" and ex[0].response == ORDINARY[0][1]
    assert [e.label for e in ex] == [0, None, 0, 1]


@pytest.mark.parametrize(
    ("bad", "needle"),
    [
        ("{not json", ":2: not valid JSON"),
        ("[1, 2]", ":2: each line must be a JSON object"),
        ('{"prompt": "hi"}', ":2: needs a non-empty 'messages' list"),
        ('{"messages": [{"role": "user"}]}', ":2: message 0 needs 'role' and 'content'"),
        ('{"messages": [{"role": "bot", "content": "x"}]}', ":2: message 0 has role 'bot'"),
        ('{"messages": [{"role": "user", "content": "x"}]}', ":2: the last message must be"),
        ('{"messages": [{"role": "assistant", "content": "x"}]}', ":2: needs a user message"),
        ('{"messages": [{"role": "user", "content": 3}]}', ":2: message 0 content must be"),
    ],
)
def test_bad_lines_name_their_line(tmp_path: Path, bad: str, needle: str) -> None:
    f = _write(tmp_path / "d.jsonl", [_row("hi", "hello"), bad])
    with pytest.raises(DataError, match=needle.replace("(", r"\(").replace("[", r"\[")):
        read_chat_jsonl(f)


def test_missing_or_empty_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_chat_jsonl(tmp_path / "nope.jsonl")
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(DataError, match="holds no examples"):
        read_chat_jsonl(tmp_path / "e.jsonl")


def test_shipped_demo_set_is_valid_and_labelled() -> None:
    ex = read_chat_jsonl(demo_file())
    labels = [e.label for e in ex]
    assert len(ex) == 48 and labels.count(1) == 12 and labels.count(0) == 36


def test_screening_ranks_planted_examples_first(tiny: Any) -> None:
    """A direction fitted on *other* texts carrying a marker ranks the examples whose responses
    carry it above ordinary answers; the model's own answer is subtracted."""
    layer = 2
    pos = [f"{MARKER} {w}" for w in ("one", "two", "three", "four", "five", "six")]
    neg = [a for _, a in ORDINARY[:6]]
    acts = capture(tiny, [tiny.prompt(t) for t in pos + neg], layers=[layer], positions="mean")
    X = acts[layer].astype(np.float64)
    u = X[:6].mean(0) - X[6:].mean(0)
    direction = ConceptDirection("marker", layer, u / np.linalg.norm(u))
    planted = {2, 5, 7}
    examples = [
        ChatExample(
            line=i + 1,
            messages=[
                {"role": "user", "content": q},
                {"role": "assistant", "content": f"{a} {MARKER}" if i in planted else a},
            ],
            label=int(i in planted),
        )
        for i, (q, a) in enumerate(ORDINARY)
    ]
    res = screen(tiny, examples, direction, max_new_tokens=6, n_random=100)
    assert {r["index"] for r in res.top(3)} == planted
    assert res.validation is not None and res.validation["auroc"] == 1.0
    assert res.validation["precision_at_n_pos"] == 1.0
    for r in res.scores:
        assert r["score"] == pytest.approx(r["projection"] - r["own_projection"])
    assert res.to_dict()["n_examples"] == len(ORDINARY)


def test_cli_screen_end_to_end(make_lm: Any, tmp_path: Path) -> None:
    lm = make_lm("llama")
    lm.model.save_pretrained(tmp_path / "m")
    lm.tokenizer.save_pretrained(tmp_path / "m")
    rows = [_row(u, a, int(i < 3)) for i, (u, a) in enumerate(ORDINARY)]
    data = _write(tmp_path / "d.jsonl", rows)
    out = tmp_path / "o" / "screen.json"
    args = ["screen", "--model", str(tmp_path / "m"), "--data", str(data)]
    args += ["--concept", "hostility", "--top", "3", "--max-new-tokens", "4", "--n-pairs", "8"]
    res = runner.invoke(app, [*args, "--json", str(out)])
    assert res.exit_code == 0, res.output
    d = json.loads(out.read_text())
    assert d["concept"] == "hostility" and d["n_examples"] == len(ORDINARY)
    assert [r["line"] for r in d["scores"]] == list(range(1, len(ORDINARY) + 1))
    assert {"index", "score", "projection", "own_projection", "snippet"} <= set(d["scores"][0])
    v = d["validation"]
    assert v["n_pos"] == 3 and 0 <= v["auroc"] <= 1 and 0.5 <= v["random_baseline_auroc"] <= 1
    assert 0.5 <= v["random_median_auroc"] <= v["random_baseline_auroc"]
    assert "top 3 of 9" in res.output


@pytest.mark.parametrize(
    ("lines", "concept", "needle"),
    [
        (["{bad"], "hostility", "d.jsonl:1: not valid JSON"),
        ([json.dumps(_row("hi", "hello"))], "nope", "unknown concept 'nope'"),
        (None, "hostility", "does not exist"),
    ],
)
def test_cli_screen_bad_input_exits_2_and_writes_nothing(
    tmp_path: Path, lines: list[str] | None, concept: str, needle: str
) -> None:
    data = tmp_path / "d.jsonl"
    if lines is not None:
        _write(data, lines)
    out = tmp_path / "screen.json"
    args = ["screen", "--data", str(data), "--concept", concept, "--json", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 2
    assert needle in res.output.replace("\n", "")
    assert not out.exists()
