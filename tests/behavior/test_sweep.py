"""``tripwire eval sweep``: scenarios x models through Inspect's eval_set, one results table,
and a second run into the same log folder resumes (re-runs nothing that finished)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tripwire.cli import app

runner = CliRunner()
MODELS = ["tripwire/scripted-scheme", "tripwire/scripted-honest"]


def _sweep(log_dir: Path, *extra: str) -> list[str]:
    args = ["eval", "sweep", "reward_hacking", "jailbreak", "--limit", "1"]
    for m in MODELS:
        args += ["--model", m]
    return [*args, "--log-dir", str(log_dir), "--retry-wait", "0", *extra]


def test_a_sweep_runs_every_scenario_on_every_model_and_resumes(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    res = runner.invoke(app, [*_sweep(logs, "--out", str(tmp_path / "res")), "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.stdout)
    assert {(r["label"], r["task"]) for r in rows} == {
        (m, t) for m in MODELS for t in ("reward_hacking", "jailbreak")
    }
    rate = {
        (r["label"], r["task"], r["condition"]): r["rate"]
        for r in rows
        if r["measure"] == "misaligned"
    }
    # the scripted schemer games the grader where it is invited to; the honest one never does
    assert any(v > 0 for (m, _, _), v in rate.items() if m == MODELS[0])
    assert all(v == 0 for (m, _, _), v in rate.items() if m == MODELS[1])
    evals = sorted(p.name for p in logs.glob("*.eval"))
    assert len(evals) == 4
    assert (tmp_path / "res" / "results.json").is_file()
    again = runner.invoke(app, [*_sweep(logs), "--json"])
    assert again.exit_code == 0, again.output
    assert sorted(p.name for p in logs.glob("*.eval")) == evals  # nothing was run twice
    assert json.loads(again.stdout) == rows


def test_a_sweep_keeps_the_control_beside_the_chosen_condition(tmp_path: Path) -> None:
    res = runner.invoke(app, [*_sweep(tmp_path / "logs", "--condition", "roleplay"), "--json"])
    assert res.exit_code == 0, res.output
    conds = {(r["task"], r["condition"]) for r in json.loads(res.stdout)}
    assert conds == {("jailbreak", "control"), ("jailbreak", "roleplay")}


def test_bad_sweeps_are_one_line_and_exit_2(tmp_path: Path) -> None:
    for extra, needle in (
        (["--condition", "nope"], "belong to none of the scenarios"),
        (["--model", "nosuch/model"], "no Inspect model provider"),
    ):
        res = runner.invoke(app, [*_sweep(tmp_path / "logs"), *extra])
        assert res.exit_code == 2, res.output
        assert needle in res.output
    assert not (tmp_path / "logs").exists()
