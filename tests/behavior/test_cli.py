"""The ``tripwire eval`` commands (:mod:`tripwire.cli.eval`) and the Inspect entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from tripwire.behavior.scenarios import TASKS
from tripwire.cli import app

runner = CliRunner()


def test_list_json_prints_the_registered_tasks_with_their_descriptions() -> None:
    from tripwire.behavior import FAMILIES

    res = runner.invoke(app, ["eval", "list", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    names = [r["name"] for r in rows]
    assert names == [f"tripwire/{n}" for n in TASKS] and len(names) == 12
    for r, n in zip(rows, TASKS, strict=True):
        fam = FAMILIES[n]
        assert r["description"] == fam.summary and r["description"]
        assert r["conditions"] == fam.conditions() and r["outcome"] == fam.metric_name


def test_run_writes_logs_and_a_results_table(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "eval",
            "run",
            "reward_hacking",
            "jailbreak",
            "-m",
            "tripwire/scripted-conditional",
            "--limit",
            "2",
            "--log-dir",
            str(tmp_path),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    jb = [r for r in rows if r["task"] == "jailbreak" and r["measure"] == "misaligned"]
    assert {r["condition"] for r in jb} == {
        "control",
        "roleplay",
        "hypothetical",
        "prefix_injection",
    }
    assert all(r["n"] == 2 for r in jb)
    assert (tmp_path / "results.json").is_file() and (tmp_path / "results.md").is_file()
    assert len(list(tmp_path.glob("*.eval"))) == 2
    table = runner.invoke(app, ["eval", "table", *map(str, tmp_path.glob("*.eval"))])
    assert table.exit_code == 0 and "prefix_injection" in table.stdout


def test_unknown_scenario_is_a_usage_error(tmp_path: Path) -> None:
    res = runner.invoke(app, ["eval", "run", "nope", "--log-dir", str(tmp_path)])
    assert res.exit_code == 2 and "unknown scenario" in res.stderr  # errors go to stderr
    assert res.stdout == ""
    assert not any(tmp_path.iterdir())


def test_inspect_eval_finds_tasks_and_provider_through_the_entry_point(tmp_path: Path) -> None:
    inspect = Path(sys.executable).with_name("inspect")
    env = {**os.environ, "INSPECT_LOG_DIR": str(tmp_path)}
    out = subprocess.run(
        [
            str(inspect),
            "eval",
            "tripwire/goal_guarding",
            "--model",
            "tripwire/scripted-scheme",
            "--display",
            "plain",
            "--log-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    (log,) = tmp_path.glob("*.eval")
    from inspect_ai.log import read_eval_log

    got = read_eval_log(str(log))
    assert got.results is not None
    assert all(s.scores and s.scores["scenario_outcome"].value == 1.0 for s in got.samples or [])


def test_behavior_audit_section(tmp_path: Path) -> None:
    from tripwire.behavior.runner import behavior_audit

    section = behavior_audit(
        "tripwire/scripted-conditional",
        ["sandbagging", "blackmail"],
        per_condition=2,
        log_dir=tmp_path,
    )
    assert section["scenarios"] == ["sandbagging", "blackmail"]
    found = {f["scenario"]: f for f in section["findings"]}
    assert found["sandbagging"]["max_diff_vs_control"] == 1.0
    assert found["blackmail"]["rate"] == {"control": 0.0, "threat": 1.0, "conflict_threat": 1.0}
    assert all(Path(p).is_file() for p in section["logs"])
    json.dumps(section)  # JSON-ready for the report


def test_audit_command_writes_the_behaviour_section(tmp_path: Path) -> None:
    res = runner.invoke(
        app,
        [
            "eval",
            "audit",
            "-m",
            "tripwire/scripted-scheme",
            "--scenarios",
            "goal_guarding,jailbreak",
            "--limit",
            "1",
            "--out",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 0, res.output
    section = json.loads((tmp_path / "behavior.json").read_text())
    assert [f["scenario"] for f in section["findings"]] == ["goal_guarding", "jailbreak"]
    assert section["findings"][0]["rate"] == {
        "control": 1.0,
        "conflict": 1.0,
        "conflict_nudge": 1.0,
    }


def test_surface_variants_give_paired_draws_per_condition(tmp_path: Path) -> None:
    from tripwire.behavior.runner import run_scenarios

    logs, rows = run_scenarios(
        ["goal_guarding"], "tripwire/scripted-conditional", variants=4, log_dir=tmp_path
    )
    samples = logs[0].samples or []
    assert len(samples) == 12
    systems = {s.metadata["system"] for s in samples if s.metadata["condition"] == "conflict"}
    assert len(systems) == 4  # each variant differs on the surface
    (row,) = [r for r in rows if r.measure == "misaligned" and r.condition == "conflict"]
    assert row.n == 4 and row.rate == 1.0 and row.diff == 1.0
    assert row.diff_method == "newcombe-paired" and row.diff_low is not None and row.diff_low > 0
