"""Escape attempts against the tripwire-bwrap jail: every one must fail."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tripwire.behavior.sandbox import (
    BwrapConfig,
    BwrapSandboxEnvironment,
    SandboxUnavailable,
    resolve_sandbox,
)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def sh(jail: BwrapSandboxEnvironment, script: str, timeout: int = 30) -> tuple[int, str]:
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
    env = BwrapSandboxEnvironment.create(BwrapConfig(cpu_seconds=2, memory_mb=256))
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
        assert a.work != b.work
    finally:
        a.cleanup()
        b.cleanup()
    assert not a.root.exists()


def test_running_as_another_user_is_refused(jail: BwrapSandboxEnvironment) -> None:
    from inspect_ai.util import SandboxUserUnsupportedError

    with pytest.raises(SandboxUserUnsupportedError):
        run(jail.exec(["id"], user="root"))
    code, out = sh(jail, "id -u")
    assert code == 0 and out.strip() != "0"  # never root inside when tripwire runs as root
