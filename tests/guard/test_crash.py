"""``kill -9``: a real ``tripwire guard`` process killed mid-stream, and ``tripwire guard
calibrate`` killed mid-run and mid-write, leave every file the guard owns as it was."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from tests.cli._subprocess import env
from tests.guard.conftest import LAYER, PROMPTS, honest_traffic, user
from tests.guard.test_server import CLI, GuardServer, _cli, _save
from tripwire.guard.detectors import load_detector, sidecar_path


def _snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root``, by relative path, with its SHA-256."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def owned(llama: Any, planted: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A folder with everything the guard reads: the model, a calibrated detector, its sidecar,
    a policy file and the honest traffic; how long one full calibration took."""
    work = tmp_path_factory.mktemp("owned")
    _save(llama, work / "model")
    for suffix in (".json", ".safetensors"):
        shutil.copy(planted.with_suffix(suffix), work / f"planted{suffix}")
    traffic = work / "honest.jsonl"
    traffic.write_text("".join(json.dumps({"messages": m}) + "\n" for m in honest_traffic(120)))
    (work / "policy.json").write_text(json.dumps({"notice": "withheld", "on_error": "fail-open"}))
    t0 = time.perf_counter()
    done = _cli(
        "calibrate", "--model", str(work / "model"), "--detector", f"{work / 'planted'}:{LAYER}",
        "--traffic", str(traffic), "--budget", "0.05", "--max-tokens", "6", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return {"work": work, "calibrate_s": time.perf_counter() - t0}


def _has_text(line: str) -> bool:
    if not line.startswith("data: {"):
        return False
    return any(c["delta"].get("content") for c in json.loads(line[6:])["choices"])


def _serve(work: Path, log: Path) -> GuardServer:
    return GuardServer(
        log, "--model", str(work / "model"), "--detector", str(work / "planted"),
        "--policy", str(work / "policy.json"), "--name", "tiny",
    )  # fmt: skip


def test_kill_9_mid_stream_leaves_no_half_answer_and_no_changed_file(
    owned: dict[str, Any], tmp_path: Path
) -> None:
    work: Path = owned["work"]
    before = _snapshot(work)
    server = _serve(work, tmp_path / "log.txt")
    client = server.client()
    lines: list[str] = []
    with (
        pytest.raises((httpx2.TransportError, openai.APIError)),
        client.chat.completions.with_streaming_response.create(
            model="tiny",
            messages=user(PROMPTS[75]),
            n=4,
            max_tokens=200,
            temperature=0,
            stream=True,
        ) as resp,  # fmt: skip
    ):
        assert resp.headers["x-tripwire-action"] == "allow"
        stream = resp.iter_lines()
        for line in stream:
            lines.append(line)
            if _has_text(line):
                server.proc.send_signal(signal.SIGKILL)  # a token is out: kill mid-stream
                break
        for line in stream:  # the rest of the stream: cut off, an error
            lines.append(line)
    assert server.proc.wait(timeout=20) == -signal.SIGKILL
    chunks = [json.loads(x[6:]) for x in lines if x.startswith("data: {")]
    assert chunks and "data: [DONE]" not in lines
    ends = [c["finish_reason"] for chunk in chunks for c in chunk["choices"]]
    assert not any(ends)  # no choice of the answer finished
    assert _snapshot(work) == before  # the guard writes nothing while serving
    again = _serve(work, tmp_path / "log2.txt")
    try:
        done = again.client().chat.completions.create(
            model="tiny",
            messages=user(PROMPTS[75]),
            max_tokens=3,
            temperature=0,  # type: ignore[arg-type]
        )
        assert done.choices[0].finish_reason == "length"
    finally:
        again.stop()
    assert _snapshot(work) == before


def test_kill_9_during_calibrate_leaves_the_sidecar_as_it_was(
    owned: dict[str, Any], tmp_path: Path
) -> None:
    work: Path = owned["work"]
    sidecar = sidecar_path(work / "planted")
    before = _snapshot(work)
    # Six times the fixture's traffic: killed at 0.6x of the fixture's whole calibration, the
    # process is past loading and still answering, however fast this machine is at the moment.
    longer = tmp_path / "honest-x6.jsonl"
    longer.write_text((work / "honest.jsonl").read_text() * 6)
    proc = subprocess.Popen(
        [*CLI, "calibrate", "--model", str(work / "model"), "--detector",
         f"{work / 'planted'}:{LAYER}", "--traffic", str(longer),
         "--budget", "0.2", "--max-tokens", "6", "--json"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env(),
    )  # fmt: skip
    time.sleep(0.6 * owned["calibrate_s"])  # past loading, answering the honest traffic
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=20) == -signal.SIGKILL  # killed, not finished
    assert _snapshot(work) == before
    assert load_detector(work / "planted").prefill.budget == 0.05  # type: ignore[union-attr]
    assert json.loads(sidecar.read_text())["prefill"]["budget"] == 0.05


KILLED_MID_WRITE = """
import os, signal, sys
from tripwire._io import atomic_path
with atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "w") as f:
        f.write(sys.argv[2][: len(sys.argv[2]) // 2])
        f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_sidecar_write_killed_half_way_leaves_the_old_one(
    llama_sidecar: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write is a temp file, fsynced, renamed over the sidecar, then the folder fsynced; a
    process killed half way through writing the temp file leaves the old sidecar whole."""
    old = llama_sidecar.read_bytes()
    new = json.dumps({**json.loads(old), "model": "x" * 10_000})
    done = subprocess.run(
        [sys.executable, "-c", KILLED_MID_WRITE, str(llama_sidecar), new], env=env(), check=False
    )
    assert done.returncode == -signal.SIGKILL
    assert llama_sidecar.read_bytes() == old
    assert load_detector(llama_sidecar.parent / "planted").prefill is not None
    # The order of the calls, recorded from a real write of the same sidecar.
    from tripwire.guard import detectors

    calls: list[tuple[str, str]] = []
    fsync, replace = os.fsync, os.replace

    def record_fsync(fd: int) -> None:
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    def record_replace(src: Any, dst: Any) -> None:
        calls.append(("replace", f"{src} -> {dst}"))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", record_fsync)
    monkeypatch.setattr(os, "replace", record_replace)
    det = load_detector(llama_sidecar.parent / "planted")
    detectors.write_sidecar(det, "tiny", {})
    folder = str(llama_sidecar.parent)
    assert [c[0] for c in calls] == ["fsync", "replace", "fsync"]
    assert calls[0][1].startswith(f"{folder}/.{llama_sidecar.name}.")
    assert calls[1][1].endswith(f" -> {llama_sidecar}") and calls[2][1] == folder


@pytest.fixture
def llama_sidecar(owned: dict[str, Any], tmp_path: Path) -> Path:
    """A copy of the calibrated detector and its sidecar."""
    for name in ("planted.json", "planted.safetensors", "planted.guard.json"):
        shutil.copy(owned["work"] / name, tmp_path / name)
    return sidecar_path(tmp_path / "planted")
