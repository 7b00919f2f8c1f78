"""Escape attempts against the tripwire-bwrap jail: every one must fail."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from inspect_ai.util import OutputLimitExceededError

import tripwire.behavior.sandbox as sb
from tripwire.behavior.sandbox import (
    BwrapConfig,
    BwrapSandboxEnvironment,
    SandboxUnavailable,
    resolve_sandbox,
)

REPO = Path(__file__).resolve().parents[2]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def sh(jail: BwrapSandboxEnvironment, script: str, timeout: int = 60) -> tuple[int, str]:
    res = run(jail.exec(["bash", "-c", script], timeout=timeout))
    return res.returncode, res.stdout + res.stderr


def test_workdir_is_writable_and_files_round_trip(jail: BwrapSandboxEnvironment) -> None:
    run(jail.write_file("a/b.txt", "line1\r\nline2"))
    assert run(jail.read_file("a/b.txt")) == "line1\r\nline2"
    code, out = sh(jail, "cat a/b.txt | wc -l; echo more >> a/b.txt && pwd")
    assert code == 0 and out.strip().endswith("/work")
    run(jail.write_file("bin.dat", bytes(range(256))))
    assert run(jail.read_file("bin.dat", text=False)) == bytes(range(256))


def test_cannot_write_outside_the_sample_folder(
    jail: BwrapSandboxEnvironment, tmp_path: Path
) -> None:
    for target in ("/usr/evil", "/etc/evil", "/evil", "/work/../evil", "/proc/sys/kernel/hostname"):
        code, _ = sh(jail, f"echo x > {target}")
        assert code != 0, target
    # the host's view: nothing appeared outside the jail's folder
    assert not Path("/usr/evil").exists() and not Path("/evil").exists()
    with pytest.raises(PermissionError):
        run(jail.write_file("/usr/evil2", "x"))


def test_cannot_read_host_secrets(jail: BwrapSandboxEnvironment, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-TOKEN")
    os.environ["TRIPWIRE_TEST_SECRET"] = "ENV-SECRET-TOKEN"
    try:
        code, out = sh(
            jail,
            f"cat {secret} /root/.bashrc /etc/shadow /etc/passwd 2>&1; env; ls / /home /root 2>&1",
        )
    finally:
        del os.environ["TRIPWIRE_TEST_SECRET"]
    assert "TOP-SECRET-TOKEN" not in out and "ENV-SECRET-TOKEN" not in out
    assert "root:" not in out  # neither shadow nor passwd exist inside
    # a symlink planted by the agent must not make the host read the target for it
    sh(jail, f"ln -s {secret} link; ln -s /etc/shadow link2")
    for link in ("link", "link2"):
        with pytest.raises(FileNotFoundError):
            run(jail.read_file(link))


def test_no_network(jail: BwrapSandboxEnvironment) -> None:
    code, out = sh(
        jail,
        "python3 - <<'PY'\n"
        "import socket\n"
        "for host in [('1.1.1.1', 53), ('8.8.8.8', 443), ('127.0.0.1', 22)]:\n"
        "    s = socket.socket(); s.settimeout(2)\n"
        "    try:\n"
        "        s.connect(host); print('CONNECTED', host)\n"
        "    except OSError as e:\n"
        "        print('blocked', host, e.errno)\n"
        "PY\n"
        "cat /sys/class/net/*/operstate 2>/dev/null; ls /sys/class/net 2>/dev/null",
    )
    assert "CONNECTED" not in out
    assert out.count("blocked") == 3


def test_fork_bomb_is_contained(jail: BwrapSandboxEnvironment) -> None:
    start = time.monotonic()
    code, out = sh(jail, "bomb() { bomb | bomb & }; bomb; sleep 2; echo survived", timeout=40)
    assert time.monotonic() - start < 40
    # the host still forks fine and the jail's uid has no processes left after cleanup
    code2, out2 = sh(jail, "echo alive")
    assert code2 == 0 and "alive" in out2


def test_cpu_and_memory_limits() -> None:
    env = BwrapSandboxEnvironment.create(BwrapConfig(cpu_seconds=2, process_memory_mb=256))
    try:
        t0 = time.monotonic()
        res = run(env.exec(["python3", "-c", "while True: pass"], timeout=30))
        assert res.returncode != 0 and time.monotonic() - t0 < 20
        res = run(
            env.exec(["python3", "-c", "x = bytearray(1024 * 1024 * 1024); print('ALLOCATED')"])
        )
        assert "ALLOCATED" not in res.stdout and res.returncode != 0
    finally:
        env.cleanup()


def test_cannot_see_or_signal_host_processes(jail: BwrapSandboxEnvironment) -> None:
    code, out = sh(
        jail, f"ls /proc | grep -E '^[0-9]+$' | wc -l; kill -0 {os.getpid()} && echo REACHED"
    )
    assert "REACHED" not in out
    assert int(out.split()[0]) < 10


def test_wall_clock_timeout_kills(jail: BwrapSandboxEnvironment) -> None:
    with pytest.raises(TimeoutError):
        run(jail.exec(["sleep", "30"], timeout=1))


def test_no_sandbox_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import tripwire.behavior.sandbox as sb

    monkeypatch.setattr(sb, "bwrap_path", lambda: None)
    monkeypatch.setattr(sb, "docker_available", lambda: False)
    with pytest.raises(SandboxUnavailable, match="never runs scenario commands on the host"):
        resolve_sandbox()
    monkeypatch.setattr(sb, "docker_available", lambda: True)
    kind, config = resolve_sandbox()
    assert (
        kind == "docker"
        and config is not None
        and Path(config).read_text().count("network_mode: none")
    )


def test_each_sample_gets_a_fresh_folder() -> None:
    a, b = BwrapSandboxEnvironment.create(), BwrapSandboxEnvironment.create()
    try:
        run(a.write_file("mine.txt", "a"))
        with pytest.raises(FileNotFoundError):
            run(b.read_file("mine.txt"))
        assert run(a.read_file("mine.txt")) == "a"  # files persist from one command to the next
    finally:
        a.cleanup()
        b.cleanup()
    assert not a.holder.alive() and not b.holder.alive()


def test_running_as_another_user_is_refused(jail: BwrapSandboxEnvironment) -> None:
    from inspect_ai.util import SandboxUserUnsupportedError

    with pytest.raises(SandboxUserUnsupportedError):
        run(jail.exec(["id"], user="root"))
    code, out = sh(jail, "id -u")
    assert code == 0 and out.strip() != "0"  # never root inside when tripwire runs as root


# --- exhausting the host (issue 11, finding 4): each failed on the jail before it ---


@pytest.fixture
def small() -> Iterator[BwrapSandboxEnvironment]:
    env = BwrapSandboxEnvironment.create(BwrapConfig(work_mb=32, tmp_mb=32, shm_mb=8))
    try:
        yield env
    finally:
        env.cleanup()


_FLOOD = """
import asyncio, json, sys
from tripwire.behavior.sandbox import BwrapSandboxEnvironment

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

env = BwrapSandboxEnvironment.create()
before = hwm()
try:
    res = asyncio.run(env.exec(["sh", "-c", "head -c 268435456 /dev/zero | tr '\\\\0' x"]))
    out = {"error": None, "kept": len(res.stdout)}
except Exception as exc:
    out = {"error": type(exc).__name__, "kept": len(getattr(exc, "truncated_output", "") or "")}
    out["tail"] = (getattr(exc, "truncated_output", "") or "")[-120:]
finally:
    env.cleanup()
out["grew"] = hwm() - before
print(json.dumps(out))
"""


def test_output_flood_keeps_host_memory_bounded() -> None:
    """256 MiB of stdout: the host keeps about 1 MiB, says it truncated, and stops the job."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    res = subprocess.run(
        [sys.executable, "-c", _FLOOD], capture_output=True, text=True, timeout=300, env=env
    )
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["grew"] < 48 * 1024 * 1024, out  # before: the whole 256 MiB (and its decode)
    assert out["error"] == "OutputLimitExceededError", out
    assert 1024 * 1024 <= out["kept"] < 1024 * 1024 + 200 and "truncated at 1 MiB" in out["tail"]


def test_dev_shm_and_dev_are_bounded(small: BwrapSandboxEnvironment) -> None:
    """/dev/shm was an unbounded RAM filesystem outside memory_mb; /dev itself was writable."""
    code, out = sh(small, "dd if=/dev/zero of=/dev/shm/fill bs=1M count=64 2>&1; echo rc=$?")
    assert "rc=0" not in out, out
    code, out = sh(small, "stat -c %s /dev/shm/fill; echo x > /dev/evil && echo WROTE")
    assert int(out.split()[0]) <= 8 * 1024 * 1024 and "WROTE" not in out, out
    code, out = sh(small, "echo fine > /dev/null && head -c 4 /dev/urandom | wc -c")
    assert code == 0 and out.split()[-1] == "4"  # the device nodes still work


@pytest.mark.parametrize("folder", ["/tmp", "/work"])
def test_writable_folders_have_a_quota(small: BwrapSandboxEnvironment, folder: str) -> None:
    """Many files each under the file-size limit may not fill the host's disk or memory."""
    code, out = sh(
        small,
        f"for i in $(seq 6); do head -c 16777216 /dev/zero > {folder}/f$i 2>/dev/null"
        f" || echo FAILED; done; echo USED=$(du -sk {folder} | cut -f1)",
    )
    assert "FAILED" in out, out
    assert int(out.split("USED=")[1].split()[0]) <= 32 * 1024, out


_HOG = (
    "for i in $(seq 8); do python3 -c \"import time; b = b'x' * (96 << 20); "
    "print('HELD', flush=True); time.sleep(4); print('ALIVE', flush=True)\" & done; wait"
)


@pytest.mark.parametrize("mechanism", ["auto", "rlimits"])
def test_total_memory_is_bounded_across_processes(
    monkeypatch: pytest.MonkeyPatch, mechanism: str
) -> None:
    """Eight processes of 96 MiB each may not hold more than the sample's 512 MiB together.

    ``auto`` uses a memory cgroup where this host allows one; ``rlimits`` forces the fallback
    (address space per process x process count).
    """
    if mechanism == "rlimits":
        monkeypatch.setattr(sb, "sample_cgroup", lambda cfg: [], raising=False)
    cfg = BwrapConfig(
        memory_mb=512, process_memory_mb=512, max_processes=16, work_mb=16, tmp_mb=16, shm_mb=8
    )
    env = BwrapSandboxEnvironment.create(cfg)
    try:
        code, out = sh(env, _HOG, timeout=60)
    finally:
        env.cleanup()
    alive = out.splitlines().count("ALIVE")
    assert alive * 96 <= 512, out  # before: all eight (768 MiB) held at once
    code, out = sh_once("python3 -c \"print('ok')\"", cfg)
    assert "ok" in out  # an ordinary process still runs under these limits


def sh_once(script: str, cfg: BwrapConfig) -> tuple[int, str]:
    env = BwrapSandboxEnvironment.create(cfg)
    try:
        return sh(env, script)
    finally:
        env.cleanup()


def test_no_host_path_in_mountinfo_or_init(jail: BwrapSandboxEnvironment) -> None:
    """mountinfo and /proc/1/cmdline named the host's sample folder and temp dir."""
    code, out = sh(
        jail, "cat /proc/self/mountinfo /proc/1/mountinfo; tr '\\0' ' ' < /proc/1/cmdline"
    )
    assert code == 0 and "/proc" in out
    tmp = tempfile.gettempdir().rstrip("/") + "/"
    words = out.split()
    assert not [w for w in words if w.startswith(tmp)], out
    for host in (str(REPO), str(Path.home()) + "/", "tripwire-sbx"):
        assert host not in out, (host, out)


def test_uid_choice_skips_a_uid_in_use_or_locked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-sample uid was random and never checked; cleanup then killed by that uid."""
    if os.geteuid() != 0:
        pytest.skip("only a root tripwire gives each sample its own uid")
    busy, locked, free = 210_001, 210_002, 210_003
    other = subprocess.Popen(
        ["setpriv", f"--reuid={busy}", f"--regid={busy}", "--clear-groups", "sleep", "60"]
    )
    while f"\t{busy}\t" not in Path(f"/proc/{other.pid}/status").read_text():
        assert other.poll() is None
    picks = iter([locked, free])
    monkeypatch.setattr(secrets, "randbelow", lambda n: next(picks) - 200_000)
    first = BwrapSandboxEnvironment.create()  # takes `locked` and holds its lock
    picks = iter([busy, locked, free])
    try:
        second = BwrapSandboxEnvironment.create()
        try:
            assert (first.uid, second.uid) == (locked, free)
        finally:
            second.cleanup()
        assert other.poll() is None  # the other user's process survived both cleanups
    finally:
        first.cleanup()
        other.kill()
        other.wait()


def test_stderr_flood_is_capped_too() -> None:
    """stderr is capped as well, and a quiet command after a flood still works."""
    env = BwrapSandboxEnvironment.create()
    try:
        with pytest.raises(OutputLimitExceededError):
            run(env.exec(["sh", "-c", "yes error >&2"], timeout=60))
        code, out = sh(env, "echo still here")
        assert code == 0 and out.strip() == "still here"
    finally:
        env.cleanup()
