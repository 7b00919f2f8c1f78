"""The ``tripwire-bwrap`` Inspect sandbox: one bubblewrap jail per sample.

Each sample gets a fresh folder, mounted at ``/work`` inside the jail and writable there, and a
second private folder for ``/tmp``. The system's ``/usr`` (and the few ``/etc`` files the dynamic
loader needs) are mounted read-only; nothing else of the host exists inside. The jail has its
own network namespace (loopback only), PID, IPC, UTS and user namespaces, a cleared environment,
and rlimits on CPU time, address space, processes and file size. When tripwire runs as root,
commands run as an unprivileged per-sample uid so that the process limit applies (the kernel
exempts root from it).

File reads and writes go through the jail too (``base64`` inside it), so a symlink the agent
plants cannot make the host read or write outside the folder.

:func:`resolve_sandbox` picks bubblewrap, else Inspect's Docker sandbox, else raises
:class:`SandboxUnavailable`; it never falls back to running on the host.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, Literal, overload

from inspect_ai.util import (
    ExecResult,
    SandboxEnvironment,
    SandboxEnvironmentConfigType,
    SandboxUserUnsupportedError,
    sandboxenv,
)
from pydantic import BaseModel

from tripwire.errors import TripwireError

SANDBOX_NAME = "tripwire-bwrap"
WORKDIR = "/work"
_PATH = "/usr/local/bin:/usr/bin:/bin"


class SandboxUnavailable(TripwireError):
    """Neither bubblewrap nor a running Docker daemon is available; nothing was run."""

    exit_code = 2


class BwrapConfig(BaseModel, frozen=True):
    """Limits of one jail (all per sample)."""

    cpu_seconds: int = 120
    """RLIMIT_CPU: CPU seconds for each command."""
    memory_mb: int = 1024
    """RLIMIT_AS: address space of each process, MiB."""
    max_processes: int = 64
    """RLIMIT_NPROC: processes of the jail's uid."""
    max_file_mb: int = 64
    """RLIMIT_FSIZE: largest file a command may write, MiB."""
    timeout: int = 60
    """Wall-clock limit of a command when the caller gives none, seconds."""


def bwrap_path() -> str | None:
    """The ``bwrap`` executable, or None."""
    return shutil.which("bwrap")


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
    mem_limit: 1g
    pids_limit: 64
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


def _jail_argv(work: Path, cfg: BwrapConfig, uid: int | None, env: dict[str, str]) -> list[str]:
    bwrap = bwrap_path()
    if bwrap is None:
        raise SandboxUnavailable("bubblewrap (bwrap) is not installed: apt-get install bubblewrap")
    mb = 1024 * 1024
    # RLIMIT_NPROC counts every process of the real uid: a per-sample uid (as root) has none yet;
    # an ordinary user already runs some, which the jail's budget must come on top of.
    nproc = cfg.max_processes if uid is not None else cfg.max_processes + _processes_of(os.getuid())
    argv = [
        "prlimit",
        f"--cpu={cfg.cpu_seconds}",
        f"--as={cfg.memory_mb * mb}",
        f"--nproc={nproc}",
        f"--fsize={cfg.max_file_mb * mb}",
        "--core=0",
        "--",
    ]
    if uid is not None:
        argv += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    argv += [bwrap, "--ro-bind", "/usr", "/usr"]
    for link in ("bin", "lib", "lib64", "sbin"):
        if Path("/", link).is_symlink():
            argv += ["--symlink", f"usr/{link}", f"/{link}"]
        elif Path("/", link).is_dir():
            argv += ["--ro-bind", f"/{link}", f"/{link}"]
    for etc in ("ld.so.cache", "alternatives", "localtime"):
        argv += ["--ro-bind-try", f"/etc/{etc}", f"/etc/{etc}"]
    argv += [
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--bind",
        str(work.parent / "tmp"),
        "/tmp",
        "--bind",
        str(work),
        WORKDIR,
        "--remount-ro",
        "/",
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--setenv",
        "PATH",
        _PATH,
        "--setenv",
        "HOME",
        WORKDIR,
        "--setenv",
        "LANG",
        "C.UTF-8",
    ]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    return argv


def _processes_of(uid: int) -> int:
    """How many processes (threads included, as the kernel counts them) ``uid`` runs now."""
    count = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid == uid:
                count += len(list((entry / "task").iterdir()))
        except OSError:
            continue
    return count


def _inside(path: str, cwd: str | None) -> str:
    """A path as the jail sees it (relative paths are relative to /work)."""
    base = PurePosixPath(WORKDIR if cwd is None else _inside(cwd, None))
    p = PurePosixPath(path)
    return str(p if p.is_absolute() else base / p)


@sandboxenv(name=SANDBOX_NAME)
class BwrapSandboxEnvironment(SandboxEnvironment):
    """A bubblewrap jail with a fresh per-sample folder (see the module docstring)."""

    def __init__(self, root: Path, work: Path, uid: int | None, config: BwrapConfig) -> None:
        super().__init__()
        self.root = root
        self.work = work
        self.uid = uid
        self.config = config

    @classmethod
    def config_deserialize(cls, config: dict[str, Any]) -> BaseModel:
        return BwrapConfig(**config)

    @classmethod
    def default_concurrency(cls) -> int | None:
        return max(1, (os.cpu_count() or 1) * 2)

    @classmethod
    async def task_init(cls, task_name: str, config: SandboxEnvironmentConfigType | None) -> None:
        if bwrap_path() is None:
            raise SandboxUnavailable(
                "bubblewrap (bwrap) is not installed: apt-get install bubblewrap"
            )

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
        root = Path(tempfile.mkdtemp(prefix="tripwire-sbx-"))
        os.chmod(root, 0o711)
        work, tmp = root / "work", root / "tmp"
        uid: int | None = None
        if os.geteuid() == 0:
            uid = 200_000 + secrets.randbelow(60_000)
        for folder in (work, tmp):
            folder.mkdir()
            if uid is not None:
                os.chown(folder, uid, uid)
            os.chmod(folder, 0o700)
        return cls(root, work, uid, cfg)

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
        """Kill what is left of the jail's processes and delete its folder."""
        if self.uid is not None:
            subprocess.run(
                ["pkill", "-KILL", "-U", str(self.uid)], capture_output=True, check=False
            )
        shutil.rmtree(self.root, ignore_errors=True)

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
        argv = _jail_argv(self.work, self.config, self.uid, env or {})
        argv += ["--chdir", _inside(cwd or WORKDIR, None), "--", *cmd]
        limit = timeout if timeout is not None else self.config.timeout
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        data = input.encode() if isinstance(input, str) else input
        try:
            out, err = await asyncio.wait_for(proc.communicate(data), timeout=limit)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            if self.uid is not None:
                subprocess.run(["pkill", "-KILL", "-U", str(self.uid)], check=False)
            raise TimeoutError(f"command timed out after {limit}s: {cmd[:3]}") from None
        code = proc.returncode if proc.returncode is not None else -1
        return ExecResult(
            success=code == 0,
            returncode=code,
            stdout=out.decode("utf-8", errors="replace"),
            stderr=err.decode("utf-8", errors="replace"),
        )

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
        res = await self.exec(["sh", "-c", 'test -f "$1" && base64 -w0 "$1"', "sh", path])
        if not res.success:
            probe = await self.exec(["sh", "-c", 'test -d "$1"', "sh", path])
            if probe.success:
                raise IsADirectoryError(f"{file} is a directory")
            raise FileNotFoundError(f"{file} does not exist in the sandbox (or is unreadable)")
        data = base64.b64decode(res.stdout)
        return data.decode("utf-8") if text else data


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
