"""The ``tripwire-bwrap`` Inspect sandbox: one bubblewrap jail per sample.

Each sample gets a jail (:mod:`tripwire.behavior.jail`) whose writable places are size-limited
tmpfs mounts: ``/work`` (the working folder), ``/tmp`` and ``/dev/shm``; they keep their files
from one command to the next and vanish with the jail. The system's ``/usr`` (and the few
``/etc`` files the dynamic loader needs) are mounted read-only; nothing else of the host exists
inside, no host folder is mounted (so ``/proc/self/mountinfo`` names none), and PID 1 is the
jail's own init. The jail has its own user, network (loopback only), PID, IPC, UTS and cgroup
namespaces, no further user namespaces, a cleared environment, rlimits on CPU time, address
space, processes and file size, and a memory budget for the whole sample (a cgroup where one can
be made, else processes x address space). When tripwire runs as root, commands run as a
per-sample uid that no account or process uses, locked for the jail's life.

Each command's stdout and stderr are read as they come; past ``max_output_kb`` the command is
stopped and :class:`~inspect_ai.util.OutputLimitExceededError` carries the part kept. When a
command ends, what it left running in its process group is killed with it.

File reads and writes go through the jail too (``base64`` inside it), so a symlink the agent
plants cannot make the host read or write outside the jail.

:func:`resolve_sandbox` picks bubblewrap, else Inspect's Docker sandbox, else raises
:class:`SandboxUnavailable`; it never falls back to running on the host.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any, Literal, overload

from inspect_ai.util import (
    ExecResult,
    OutputLimitExceededError,
    SandboxEnvironment,
    SandboxEnvironmentConfigType,
    SandboxEnvironmentLimits,
    SandboxUserUnsupportedError,
    sandboxenv,
)
from pydantic import BaseModel

from tripwire.behavior.cgroup import remove_cgroup
from tripwire.behavior.jail import MB, BwrapConfig, Holder, allocate_uid, sample_cgroup
from tripwire.errors import TripwireError

SANDBOX_NAME = "tripwire-bwrap"
WORKDIR = "/work"
_PATH = "/usr/local/bin:/usr/bin:/bin"
_CHUNK = 64 * 1024


class SandboxUnavailable(TripwireError):
    """Neither bubblewrap nor a running Docker daemon is available; nothing was run."""

    exit_code = 2


def bwrap_path() -> str | None:
    """The ``bwrap`` executable, or None."""
    return shutil.which("bwrap")


def _bwrap() -> str:
    path = bwrap_path()
    if path is None:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed: apt-get install bubblewrap")
    return path


def _size(n: int) -> str:
    return f"{n // MB} MiB" if n % MB == 0 else f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} B"


def docker_available() -> bool:
    """True when a Docker client can reach a daemon."""
    if shutil.which("docker") is None:
        return False
    try:
        res = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0


_COMPOSE = """\
# Written by tripwire: the Docker equivalent of the tripwire-bwrap jail.
services:
  default:
    image: python:3.11-slim
    command: tail -f /dev/null
    init: true
    network_mode: none
    working_dir: /work
    read_only: true
    tmpfs: ["/tmp:size=64m", "/work:size=256m,mode=1777"]
    user: "65534:65534"
    cpus: 1.0
    mem_limit: 2g
    memswap_limit: 2g
    shm_size: 16m
    pids_limit: 32
"""


def docker_compose_file() -> Path:
    """A compose file for Inspect's Docker sandbox with the same isolation as the jail."""
    home = Path(os.environ.get("TRIPWIRE_HOME", Path.home() / ".cache" / "tripwire"))
    path = home / "behavior" / "compose.yaml"
    if not path.is_file() or path.read_text() != _COMPOSE:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(_COMPOSE)
        tmp.replace(path)
    return path


def resolve_sandbox(prefer: str | None = None) -> tuple[str, str | None]:
    """The sandbox spec for scenario tasks: ``(type, config)``.

    ``prefer`` (or the ``TRIPWIRE_SANDBOX`` environment variable) may be ``bwrap`` or ``docker``.

    Raises:
        SandboxUnavailable: the preferred or any isolating sandbox is missing.
    """
    choice = (prefer or os.environ.get("TRIPWIRE_SANDBOX") or "auto").lower()
    if choice not in ("auto", "bwrap", "docker"):
        raise SandboxUnavailable(f"unknown sandbox {choice!r}: use bwrap, docker or auto")
    if choice in ("auto", "bwrap") and bwrap_path() is not None:
        return (SANDBOX_NAME, None)
    if choice in ("auto", "docker") and docker_available():
        return ("docker", str(docker_compose_file()))
    raise SandboxUnavailable(
        "no isolating sandbox: install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap) "
        "or start Docker; tripwire never runs scenario commands on the host"
    )


def _inside(path: str, cwd: str | None) -> str:
    """A path as the jail sees it (relative paths are relative to /work)."""
    base = PurePosixPath(WORKDIR if cwd is None else _inside(cwd, None))
    p = PurePosixPath(path)
    return str(p if p.is_absolute() else base / p)


async def _drain(stream: asyncio.StreamReader | None, keep: bytearray, cap: int) -> bool:
    """Read ``stream`` to its end, keeping at most ``cap`` bytes; True when more came."""
    over = False
    while stream is not None and (chunk := await stream.read(_CHUNK)):
        room = cap - len(keep)
        if len(chunk) > room:
            keep += chunk[: max(room, 0)]
            over = True
            return over
        keep += chunk
    return over


@sandboxenv(name=SANDBOX_NAME)
class BwrapSandboxEnvironment(SandboxEnvironment):
    """A bubblewrap jail per sample (see the module docstring)."""

    def __init__(self, holder: Holder, uid_lock: int | None, config: BwrapConfig) -> None:
        super().__init__()
        self.holder = holder
        self.uid = holder.uid
        self.uid_lock = uid_lock
        self.config = config

    @classmethod
    def config_deserialize(cls, config: dict[str, Any]) -> BaseModel:
        return BwrapConfig(**config)

    @classmethod
    def default_concurrency(cls) -> int | None:
        return max(1, (os.cpu_count() or 1) * 2)

    @classmethod
    async def task_init(cls, task_name: str, config: SandboxEnvironmentConfigType | None) -> None:
        _bwrap()

    @classmethod
    async def sample_init(
        cls,
        task_name: str,
        config: SandboxEnvironmentConfigType | None,
        metadata: dict[str, str],
    ) -> dict[str, SandboxEnvironment]:
        return {"default": cls.create(config)}

    @classmethod
    def create(cls, config: SandboxEnvironmentConfigType | None = None) -> BwrapSandboxEnvironment:
        """A fresh jail outside an evaluation (tests, scripts)."""
        cfg = config if isinstance(config, BwrapConfig) else BwrapConfig()
        bwrap = _bwrap()
        uid: int | None = None
        lock: int | None = None
        cgroup = sample_cgroup(cfg)
        try:
            if os.geteuid() == 0:
                uid, lock = allocate_uid()
            holder = Holder(bwrap, cfg, uid, cgroup)
        except OSError as exc:
            if lock is not None:
                os.close(lock)
            remove_cgroup(cgroup)
            raise SandboxUnavailable(f"cannot start the tripwire-bwrap jail: {exc}") from None
        return cls(holder, lock, cfg)

    @classmethod
    async def sample_cleanup(
        cls,
        task_name: str,
        config: SandboxEnvironmentConfigType | None,
        environments: dict[str, SandboxEnvironment],
        interrupted: bool,
    ) -> None:
        for env in environments.values():
            if isinstance(env, BwrapSandboxEnvironment):
                env.cleanup()

    def cleanup(self) -> None:
        """End the jail: its PID namespace dies with its init, its tmpfs files with it."""
        self.holder.close()
        remove_cgroup(self.holder.cgroup)
        if self.uid_lock is not None:
            os.close(self.uid_lock)
            self.uid_lock = None

    async def exec(
        self,
        cmd: list[str],
        input: str | bytes | None = None,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        user: str | None = None,
        timeout: int | None = None,
        timeout_retry: bool = True,
        concurrency: bool = True,
    ) -> ExecResult[str]:
        if not cmd:
            raise ValueError("exec needs a command")
        if user is not None:
            raise SandboxUserUnsupportedError(
                "the tripwire-bwrap jail runs every command as its one unprivileged user"
            )
        cap = min(self.config.max_output_kb * 1024, SandboxEnvironmentLimits.MAX_EXEC_OUTPUT_SIZE)
        limit = timeout if timeout is not None else self.config.timeout
        code, out, err, over = await self._run(cmd, input, cwd, env or {}, limit, cap)
        if over:
            text = out.decode("utf-8", errors="replace") + err.decode("utf-8", errors="replace")
            size = _size(cap)
            raise OutputLimitExceededError(
                size, text + f"\n[tripwire: output truncated at {size}; the command was stopped]"
            )
        return ExecResult(
            success=code == 0,
            returncode=code,
            stdout=out.decode("utf-8", errors="replace"),
            stderr=err.decode("utf-8", errors="replace"),
        )

    async def _run(
        self,
        cmd: list[str],
        input: str | bytes | None,
        cwd: str | None,
        env: dict[str, str],
        limit: int,
        cap: int,
    ) -> tuple[int, bytes, bytes, bool]:
        """Run ``cmd`` in the jail keeping at most ``cap`` bytes of each output stream.

        A stream passing ``cap`` stops the command (its whole process group) at once, so the
        host never holds more than ``2 * cap`` bytes of output.
        """
        if not self.holder.alive():
            raise SandboxUnavailable("the tripwire-bwrap jail has ended (its init was killed)")
        if "=" in cmd[0]:
            cmd = ["/bin/sh", "-c", 'exec "$@"', "sh", *cmd]
        full = {"PATH": _PATH, "HOME": WORKDIR, "LANG": "C.UTF-8", **env}
        argv = self.holder.enter_argv(_inside(cwd or WORKDIR, None), full) + cmd
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        out, err = bytearray(), bytearray()
        readers = [
            asyncio.ensure_future(_drain(proc.stdout, out, cap)),
            asyncio.ensure_future(_drain(proc.stderr, err, cap)),
        ]
        feeder = asyncio.ensure_future(_feed(proc.stdin, input))
        waiter = asyncio.ensure_future(_exited(proc))
        over, timed_out = False, False
        pending: set[asyncio.Future[Any]] = {waiter, *readers}
        deadline = asyncio.get_running_loop().time() + limit
        while waiter in pending and not over:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                timed_out = True
                break
            done, pending = await asyncio.wait(
                pending, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            over = any(r in done and r.result() for r in readers)
        if proc.returncode is None:
            proc.kill()  # nsenter, not yet reaped: its pid is still ours
        self.holder.kill_group(proc.pid)  # the command and what it left running in its group
        await _exited(proc)
        # output still in the pipes, unless a process that left the group holds them open
        done, pending = await asyncio.wait(readers, timeout=1)
        over = over or any(r in done and r.result() for r in readers)
        for task in (*pending, feeder, waiter):
            task.cancel()
        if pending:  # let go of the pipes that process holds (it dies with the jail)
            transport = getattr(proc, "_transport", None)
            if transport is not None:
                transport.close()
        if timed_out:
            raise TimeoutError(f"command timed out after {limit}s: {cmd[:3]}")
        code = proc.returncode if proc.returncode is not None else -1
        # nsenter re-raises the signal that ended the command; report it as a shell does
        return (128 - code if code < 0 else code), bytes(out), bytes(err), over

    async def write_file(self, file: str, contents: str | bytes) -> None:
        path = _inside(file, None)
        data = contents.encode() if isinstance(contents, str) else contents
        script = 'mkdir -p "$(dirname "$1")" && base64 -d > "$1"'
        res = await self.exec(["sh", "-c", script, "sh", path], input=base64.b64encode(data))
        if not res.success:
            msg = res.stderr.strip()
            if "Is a directory" in msg:
                raise IsADirectoryError(f"{file} is a directory")
            raise PermissionError(f"cannot write {file} in the sandbox: {msg}")

    @overload
    async def read_file(self, file: str, text: Literal[True] = True) -> str: ...

    @overload
    async def read_file(self, file: str, text: Literal[False]) -> bytes: ...

    async def read_file(self, file: str, text: bool = True) -> str | bytes:
        path = _inside(file, None)
        most = min(SandboxEnvironmentLimits.MAX_READ_FILE_SIZE, self.config.max_file_mb * MB)
        script = (
            'test -f "$1" || exit 3; [ "$(stat -c %s "$1")" -le "$2" ] || exit 4; base64 -w0 "$1"'
        )
        cmd = ["sh", "-c", script, "sh", path, str(most)]
        code, out, _, _ = await self._run(cmd, None, None, {}, self.config.timeout, most * 2)
        if code == 4:
            raise OutputLimitExceededError(_size(most), None)
        if code != 0:
            probe = await self.exec(["sh", "-c", 'test -d "$1"', "sh", path])
            if probe.success:
                raise IsADirectoryError(f"{file} is a directory")
            raise FileNotFoundError(f"{file} does not exist in the sandbox (or is unreadable)")
        data = base64.b64decode(out)
        return data.decode("utf-8") if text else data


async def _exited(proc: asyncio.subprocess.Process) -> int:
    """The exit status, as soon as the process ends (``wait()`` also waits for its pipes)."""
    delay = 0.001
    while proc.returncode is None:
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
    return proc.returncode


async def _feed(stdin: asyncio.StreamWriter | None, data: str | bytes | None) -> None:
    if stdin is None:
        return
    try:
        if data:
            stdin.write(data.encode() if isinstance(data, str) else data)
            await stdin.drain()
        stdin.close()
    except (BrokenPipeError, ConnectionResetError):
        pass


__all__ = [
    "SANDBOX_NAME",
    "BwrapConfig",
    "BwrapSandboxEnvironment",
    "SandboxUnavailable",
    "bwrap_path",
    "docker_available",
    "docker_compose_file",
    "resolve_sandbox",
]
