from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tripwire.cli import app

runner = CliRunner()


def test_concepts_list_json() -> None:
    res = runner.invoke(app, ["concepts", "list", "--json"])
    assert res.exit_code == 0
    names = json.loads(res.stdout)
    assert "desperation" in names and len(names) >= 12


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["audit", "--sections", "nope", "--out", "{tmp}/r"], "unknown report section"),
        (["audit", "--model", "no-such-model", "--out", "{tmp}/r"], "unknown model"),
        (["info", "--model", "/no/such/folder"], "does not exist"),
        (["info", "--model", "org/uncached"], "never downloads"),
        (["info", "--dtype", "float8", "--model", "org/uncached"], "unknown dtype"),
        (["steer", "hi", "--vector", "{tmp}/missing"], "no saved concept vector"),
        (
            ["concepts", "export", "{tmp}/missing", "--out", "{tmp}/x.gguf"],
            "no saved concept vector",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    res = runner.invoke(app, argv)
    assert res.exit_code == 2, res.output
    assert message in res.stderr
    assert len([line for line in res.stderr.splitlines() if line.startswith("error:")]) == 1
    assert list(tmp_path.iterdir()) == []


def test_usage_error_from_typer_is_2() -> None:
    res = runner.invoke(app, ["audit", "--limit", "0"])
    assert res.exit_code == 2


def test_export_and_steer_with_a_saved_vector(tmp_path: Path, make_lm: Any) -> None:
    from tripwire.whitebox.concepts import extract_concepts

    lm = make_lm("llama")
    lm.model.save_pretrained(tmp_path / "m")
    lm.tokenizer.save_pretrained(tmp_path / "m")
    ((vec, _),) = extract_concepts(lm, ["calm"], n_neutral=8)
    vec.layer = max(vec.layer, 1)
    vec.save(tmp_path / "calm")
    res = runner.invoke(
        app,
        [
            "concepts",
            "export",
            str(tmp_path / "calm"),
            "--out",
            str(tmp_path / "calm.gguf"),
            "--strength",
            "3",
        ],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "calm.gguf").stat().st_size > 0
    res = runner.invoke(
        app,
        [
            "steer",
            "Hello there",
            "--vector",
            str(tmp_path / "calm"),
            "--model",
            str(tmp_path / "m"),
            "--strength",
            "50",
            "--max-new-tokens",
            "4",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["concept"] == "calm" and out["before"] != out["after"]
