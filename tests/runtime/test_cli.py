"""``keys create``, ``serve`` and ``watch`` from the command line: exit code 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from tripwire.runtime.cli import app
from tripwire.runtime.keys import tenant_for
from tripwire.runtime.store import make_engine
from tripwire.runtime.traffic import attack_events, honest_stream

runner = CliRunner()


def test_keys_create_prints_a_working_key(sqlite_url: str) -> None:
    r = runner.invoke(app, ["keys", "create", "--db", sqlite_url, "--tenant", "ops"])
    assert r.exit_code == 0, r.output
    key = r.output.strip()
    assert key.startswith("tw_") and len(key) > 40
    engine = make_engine(sqlite_url)
    assert tenant_for(engine, key) is not None
    assert tenant_for(engine, key + "x") is None
    engine.dispose()


def test_bad_arguments_exit_2(tmp_path: Path) -> None:
    nodb = f"sqlite:///{tmp_path}/never.db"
    r = runner.invoke(app, ["keys", "create", "--db", "mysql://x/y"])
    assert r.exit_code == 2 and "not supported" in r.output
    r = runner.invoke(app, ["serve", "--db", f"sqlite:///{tmp_path}/nope/x.db"])
    assert r.exit_code == 2 and "does not exist" in r.output
    r = runner.invoke(app, ["serve", "--db", nodb, "--policy", str(tmp_path / "none.yaml")])
    assert r.exit_code == 2
    r = runner.invoke(app, ["serve", "--db", nodb, "--llm-monitor", "judge=ftp://x@m"])
    assert r.exit_code == 2 and "http" in r.output
    r = runner.invoke(app, ["serve", "--db", nodb, "--probe", "smollm2-135m,det"])
    assert r.exit_code == 2 and "MODEL,DETECTOR,LAYER" in r.output
    few = tmp_path / "few.jsonl"
    few.write_text('{"agent": "a", "type": "message"}\n')
    r = runner.invoke(app, ["serve", "--db", nodb, "--honest", str(few)])
    assert r.exit_code == 2 and "at least 100" in r.output
    assert not (tmp_path / "never.db").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"agent": "a", "type": "message"}\n{"agent": "a", "type": "nope"}\n')
    db = tmp_path / "w.db"
    r = runner.invoke(app, ["watch", str(bad), "--db", str(db)])
    assert r.exit_code == 2 and "bad.jsonl:2" in r.output
    assert not db.exists()  # validated before anything was written


def test_watch_runs_the_monitors_in_process(tmp_path: Path) -> None:
    trace = tmp_path / "trace.jsonl"
    events = honest_stream(400, seed=2, agents=2) + attack_events("agent-0")
    trace.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    out = tmp_path / "summary.json"
    r = runner.invoke(
        app, ["watch", str(trace), "--db", str(tmp_path / "w.db"), "--summary", str(out)]
    )
    assert r.exit_code == 0, r.output
    s = json.loads(out.read_text())
    assert s["events"] == len(events)
    assert s["actions"]["block"] >= 10 and s["actions"]["allow"] >= 400
    assert "weight-exfiltration" in s["rules_matched"]
    assert s["alerts"]["verdict"] >= len(attack_events()) - 1
    # The footprint of watch alone: its own process (in-process, pytest's RSS would count).
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tripwire.runtime.cli",
            "watch",
            str(trace),
            "--db",
            str(tmp_path / "w2.db"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert 0 < json.loads(proc.stdout)["peak_rss_mib"] < 1024
