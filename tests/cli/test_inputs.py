"""The checks that run before any work: output paths, tenant names, and what a failed
``watch`` leaves behind (nothing it created)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tripwire.cli import app
from tripwire.errors import UsageError

runner = CliRunner()


def test_output_paths(tmp_path: Path) -> None:
    from tripwire.cli._inputs import check_in_file, check_out_dir, check_out_file

    (tmp_path / "f").write_text("x")
    check_out_file(tmp_path / "new" / "deeper" / "r.json")  # folders are made at write time
    check_out_dir(tmp_path / "new" / "report")
    check_out_dir(tmp_path)
    with pytest.raises(UsageError, match="is a folder"):
        check_out_file(tmp_path)
    with pytest.raises(UsageError, match="is a file, not a folder"):
        check_out_file(tmp_path / "f" / "r.json")
    with pytest.raises(UsageError, match="exists and is not a folder"):
        check_out_dir(tmp_path / "f")
    with pytest.raises(UsageError, match="is a file, not a folder"):
        check_out_dir(tmp_path / "f" / "sub" / "report")
    with pytest.raises(UsageError, match="is a folder"):
        check_in_file(tmp_path, "--eval")
    with pytest.raises(UsageError, match="does not exist"):
        check_in_file(tmp_path / "none.jsonl", "--eval")


@pytest.mark.parametrize("name", ["ops", "tenant-a", "team.b_2@corp:eu", "x" * 64])
def test_tenant_names_that_are_accepted(name: str) -> None:
    from tripwire.runtime.keys import check_tenant

    assert check_tenant(name) == name


@pytest.mark.parametrize("name", ["", " ", " ops", "a b", "a/b", "-ops", "x" * 65, "é", "a\n"])
def test_tenant_names_that_are_refused(name: str) -> None:
    from tripwire.runtime.keys import check_tenant

    with pytest.raises(UsageError, match="tenant name"):
        check_tenant(name)


def _trace(folder: Path) -> Path:
    trace = folder / "trace.jsonl"
    trace.write_text(json.dumps({"agent": "a", "type": "message", "content": "hi"}) + "\n")
    return trace


def _disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """Writing the summary fails as it does on a full disk."""
    import tripwire._io

    def full(path: Any, obj: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tripwire._io, "write_json", full)


def test_a_watch_that_fails_after_creating_its_database_removes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = _trace(tmp_path)
    _disk_full(monkeypatch)
    db, summary = tmp_path / "w.db", tmp_path / "s.json"
    r = runner.invoke(app, ["watch", str(trace), "--db", str(db), "--summary", str(summary)])
    assert r.exit_code != 0 and isinstance(r.exception, OSError)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trace.jsonl"]


def test_a_watch_that_fails_keeps_a_database_it_did_not_create(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace, db = _trace(tmp_path), tmp_path / "w.db"
    r = runner.invoke(app, ["watch", str(trace), "--db", str(db), "--json"])
    assert r.exit_code == 0, r.output
    _disk_full(monkeypatch)
    r = runner.invoke(app, ["watch", str(trace), "--db", str(db), "--summary", "s.json"])
    assert r.exit_code != 0 and db.is_file()  # an earlier run's database is the user's
