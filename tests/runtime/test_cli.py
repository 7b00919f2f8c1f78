"""``keys``, ``serve`` and ``watch`` (:mod:`tripwire.cli.serve`); exit code 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from tripwire.cli import app
from tripwire.runtime.keys import tenant_for
from tripwire.runtime.store import make_engine
from tripwire.runtime.traffic import attack_events, honest_stream
from tripwire.runtime.watch import flagged_events

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
    assert r.exit_code == 2 and "not supported" in r.stderr
    r = runner.invoke(app, ["serve", "--db", f"sqlite:///{tmp_path}/nope/x.db"])
    assert r.exit_code == 2 and "does not exist" in r.stderr
    r = runner.invoke(app, ["serve", "--db", nodb, "--policy", str(tmp_path / "none.yaml")])
    assert r.exit_code == 2
    r = runner.invoke(app, ["serve", "--db", nodb, "--llm-monitor", "judge=ftp://x@m"])
    assert r.exit_code == 2 and "http" in r.stderr
    r = runner.invoke(app, ["serve", "--db", nodb, "--probe", "smollm2-135m,det"])
    assert r.exit_code == 2 and "MODEL,DETECTOR,LAYER" in r.stderr
    few = tmp_path / "few.jsonl"
    few.write_text('{"agent": "a", "type": "message"}\n')
    r = runner.invoke(app, ["serve", "--db", nodb, "--honest", str(few)])
    assert r.exit_code == 2 and "at least 100" in r.stderr
    assert not (tmp_path / "never.db").exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"agent": "a", "type": "message"}\n{"agent": "a", "type": "nope"}\n')
    db = tmp_path / "w.db"
    r = runner.invoke(app, ["watch", str(bad), "--db", str(db)])
    assert r.exit_code == 2 and "bad.jsonl:2" in r.stderr
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
    # Without --json: the flagged events, one row each (position in the trace, agent, action,
    # reasons), then a summary line.
    text = " ".join(r.stdout.replace("│", " ").split())
    n_flagged = len(events) - s["actions"]["allow"]
    assert f"flagged events: {n_flagged} of {len(events)}" in text
    assert "weight-exfiltration" in text and "agent-0" in text
    assert f"{len(events)} events (" in text and "peak RSS" in text
    flagged = flagged_events(tmp_path / "w.db", len(events))
    assert len(flagged) == n_flagged and all(f["action"] != "allow" for f in flagged)
    positions = [f["position"] for f in flagged]
    assert (
        positions == sorted(set(positions)) and positions[0] >= 1 and positions[-1] <= len(events)
    )
    first_attack = len(events) - len(attack_events("agent-0")) + 1
    blocked = [f for f in flagged if f["action"] == "block"]
    assert len(blocked) == s["actions"]["block"]
    assert all(f["position"] >= first_attack and f["agent"] == "agent-0" for f in blocked)
    assert any("weight-exfiltration" in f["reasons"] for f in blocked)
    # A second run into the same database lists only its own events.
    again = runner.invoke(app, ["watch", str(trace), "--db", str(tmp_path / "w.db")])
    assert again.exit_code == 0, again.output
    assert f"flagged events: {n_flagged} of {len(events)}" in " ".join(
        again.stdout.replace("│", " ").split()
    )
    assert flagged_events(tmp_path / "w.db", len(events)) == flagged
    # The footprint of watch alone: its own process (in-process, pytest's RSS would count).
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tripwire.cli",
            "watch",
            str(trace),
            "--db",
            str(tmp_path / "w2.db"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    summary = json.loads(proc.stdout)  # --json: the summary alone on stdout
    assert 0 < summary["peak_rss_mib"] < 1024
    assert summary["actions"] == s["actions"] and summary["events"] == s["events"]


def test_watch_with_nothing_flagged_says_so(tmp_path: Path) -> None:
    trace = tmp_path / "calm.jsonl"
    trace.write_text('{"agent": "a", "type": "message", "content": "Hello, how can I help?"}\n')
    r = runner.invoke(app, ["watch", str(trace), "--db", str(tmp_path / "w.db")])
    assert r.exit_code == 0, r.output
    assert "no event of 1 was flagged" in r.stdout


def test_serve_says_where_it_listens_and_stops(tmp_path: Path) -> None:
    from tests.runtime.server import free_port

    port = free_port()
    db = f"sqlite:///{tmp_path}/s.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tripwire.cli", "serve", "--db", db, "--port", str(port)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert line.strip() == f"listening on http://127.0.0.1:{port} (db {db})", line
        import httpx

        for _ in range(200):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise AssertionError("serve did not answer /healthz")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode in (0, -15)
