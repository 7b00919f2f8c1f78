"""Per-sample cgroups for the sandbox: a memory and a process limit the kernel enforces."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path


def _own_cgroup(controller: str) -> str | None:
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if controller in names.split(",") or (controller == "" and names == ""):
            return path
    return None


def _v2_base() -> Path | None:
    forced = os.environ.get("TRIPWIRE_SANDBOX_CGROUP")
    if forced:
        return Path(forced)
    root = Path("/sys/fs/cgroup")
    own = _own_cgroup("")
    if own is None or not (root / "cgroup.controllers").is_file():
        return None
    return root / own.lstrip("/")


def make_cgroup(memory: int, pids: int) -> list[Path]:
    """New cgroup folders limiting ``memory`` bytes and ``pids`` tasks, or [] where none can be.

    cgroup v2: a child of ``TRIPWIRE_SANDBOX_CGROUP`` or of this process's own cgroup, when the
    parent's ``cgroup.subtree_control`` already gives children ``memory`` and ``pids`` (v2 lets
    no process sit in a cgroup that hands controllers down, so tripwire does not enable them).
    cgroup v1: a child in the memory and in the pids hierarchy, when both are writable.
    """
    name = f"tripwire-{secrets.token_hex(6)}"
    made: list[Path] = []
    try:
        base = _v2_base()
        if base is not None:
            ctl = (base / "cgroup.subtree_control").read_text().split()
            if "memory" not in ctl or "pids" not in ctl:
                return []
            made.append(base / name)
            made[0].mkdir()
            (made[0] / "memory.max").write_text(str(memory))
            if (made[0] / "memory.swap.max").exists():
                (made[0] / "memory.swap.max").write_text("0")
            (made[0] / "pids.max").write_text(str(pids))
            return made
        mem_own, pid_own = _own_cgroup("memory"), _own_cgroup("pids")
        if mem_own is None or pid_own is None:
            return []
        for ctl_name, own in (("memory", mem_own), ("pids", pid_own)):
            made.append(Path("/sys/fs/cgroup", ctl_name, own.lstrip("/"), name))
            made[-1].mkdir()
        (made[0] / "memory.limit_in_bytes").write_text(str(memory))
        if (made[0] / "memory.memsw.limit_in_bytes").exists():
            (made[0] / "memory.memsw.limit_in_bytes").write_text(str(memory))
        (made[1] / "pids.max").write_text(str(pids))
        return made
    except OSError:
        remove_cgroup(made)
        return []


def remove_cgroup(folders: list[Path]) -> None:
    """Delete the cgroup folders (their processes are gone or going)."""
    for folder in folders:
        for _ in range(50):
            try:
                folder.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)
