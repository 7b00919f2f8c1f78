"""One sample's bubblewrap jail: a long-lived holder process and the commands entered into it.

The holder is ``bwrap`` running an idle ``cat`` in fresh namespaces (user, mount, PID, network,
IPC, UTS, cgroup). Its ``/work``, ``/tmp`` and ``/dev/shm`` are size-limited tmpfs mounts that
live as long as the holder, so files persist from one command to the next, the host's disk is
never written, and no host folder (hence no host path) is mounted. Each command is started with
``nsenter`` into the holder's namespaces (through file descriptors held by this process, so a
recycled PID can never redirect it into another jail), as the jail's uid, with ``no_new_privs``.

Memory: the sample's total (processes and tmpfs files together) is ``memory_mb``. Where a memory
cgroup can be made (cgroup v1 memory+pids hierarchies writable, or a cgroup v2 folder whose
children get the memory and pids controllers: the own cgroup or ``TRIPWIRE_SANDBOX_CGROUP``),
the holder and every command join a per-sample cgroup with that limit, so the kernel enforces it.
Otherwise each process's address space is capped at ``(memory_mb - tmpfs sizes) /
max_processes`` and the process count at ``max_processes`` (RLIMIT_NPROC), so the product stays
within the budget; that process count is per uid, so it is per sample only when tripwire runs as
root (each sample gets its own uid), and shared by the samples of an ordinary user.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import json
import os
import pwd
import secrets
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from pydantic import BaseModel, model_validator

from tripwire.behavior.cgroup import make_cgroup

MB = 1024 * 1024
_NS_GET_PARENT = 0xB702  # ioctl on a user-namespace fd: its parent namespace
_HOLDER_PROCESSES = 3  # bwrap outside, its reaper (pid 1 inside), the idle anchor
_UID_BASE, _UID_SPAN = 200_000, 60_000
_JOIN = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'


class BwrapConfig(BaseModel, frozen=True):
    """Limits of one jail (all per sample)."""

    cpu_seconds: int = 120
    """RLIMIT_CPU: CPU seconds of each process."""
    memory_mb: int = 2048
    """The sample's total memory, MiB: every process and every tmpfs file together."""
    process_memory_mb: int = 1024
    """RLIMIT_AS: largest address space of one process, MiB (lowered without a cgroup)."""
    max_processes: int = 32
    """Processes (threads included) the jail may run at once."""
    work_mb: int = 256
    """Size of the ``/work`` tmpfs, MiB."""
    tmp_mb: int = 64
    """Size of the ``/tmp`` tmpfs, MiB."""
    shm_mb: int = 16
    """Size of the ``/dev/shm`` tmpfs, MiB."""
    max_file_mb: int = 64
    """RLIMIT_FSIZE: largest file a command may write, MiB."""
    max_output_kb: int = 1024
    """Most stdout (and, separately, stderr) kept from one command, KiB; more stops it."""
    timeout: int = 60
    """Wall-clock limit of a command when the caller gives none, seconds."""

    @model_validator(mode="after")
    def _fits(self) -> BwrapConfig:
        if self.memory_mb - self.tmpfs_mb < 16 * self.max_processes:
            raise ValueError(
                f"memory_mb={self.memory_mb} leaves under 16 MiB per process after the tmpfs "
                f"mounts ({self.tmpfs_mb} MiB) for max_processes={self.max_processes}: "
                "raise memory_mb or lower the others"
            )
        return self

    @property
    def tmpfs_mb(self) -> int:
        """The three tmpfs mounts together, MiB."""
        return self.work_mb + self.tmp_mb + self.shm_mb

    def address_space_mb(self, cgroup: bool) -> int:
        """RLIMIT_AS of each process: with a cgroup as configured, else a share of the budget."""
        if cgroup:
            return self.process_memory_mb
        share = (self.memory_mb - self.tmpfs_mb) // self.max_processes
        return min(self.process_memory_mb, share)


# --- uids --------------------------------------------------------------------------------------


def uid_in_use(uid: int) -> bool:
    """Whether any process has ``uid`` as a real, effective, saved or filesystem uid or gid."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            lines = (entry / "status").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            if line.startswith(("Uid:", "Gid:")) and str(uid) in line.split()[1:]:
                return True
    return False


def processes_of(uid: int) -> int:
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


def _lock_dir() -> Path:
    for base in (Path("/run/lock"), Path(tempfile.gettempdir())):
        path = base / "tripwire-uids"
        try:
            path.mkdir(mode=0o700, exist_ok=True)
            st = path.lstat()
        except OSError:
            continue
        if path.is_dir() and not path.is_symlink() and st.st_uid == os.geteuid():
            return path
    raise OSError("no private folder for the sandbox's uid locks (/run/lock or the temp dir)")


def _named(uid: int) -> bool:
    """Whether an account or a group has this number."""
    for lookup in (pwd.getpwuid, grp.getgrgid):
        try:
            lookup(uid)
            return True
        except KeyError:
            pass
    return False


def allocate_uid() -> tuple[int, int]:
    """A uid no account, group or process uses, locked for us: ``(uid, lock fd)``.

    The lock (``flock`` on ``tripwire-uids/UID.lock``) is held until the fd is closed, so two
    jails (in this or another tripwire process) never share a uid.
    """
    folder = _lock_dir()
    for _ in range(256):
        uid = _UID_BASE + secrets.randbelow(_UID_SPAN)
        if _named(uid):
            continue
        fd = os.open(folder / f"{uid}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        if uid_in_use(uid):
            os.close(fd)
            continue
        return uid, fd
    raise OSError("no free uid for the sandbox in 256 tries")


def sample_cgroup(cfg: BwrapConfig) -> list[Path]:
    """The sample's cgroup folders (memory and process limits), or [] where none can be made."""
    return make_cgroup(cfg.memory_mb * MB, cfg.max_processes + _HOLDER_PROCESSES)


# --- the holder --------------------------------------------------------------------------------


def _limits(cfg: BwrapConfig, uid: int | None, cgroup: bool) -> list[str]:
    # RLIMIT_NPROC counts every process of the real uid: a per-sample uid (as root) has only the
    # holder's; an ordinary user already runs some, which the jail's budget comes on top of.
    base = _HOLDER_PROCESSES if uid is not None else processes_of(os.getuid())
    return [
        "prlimit",
        f"--cpu={cfg.cpu_seconds}",
        f"--as={cfg.address_space_mb(cgroup) * MB}",
        f"--nproc={cfg.max_processes + base}",
        f"--fsize={cfg.max_file_mb * MB}",
        "--core=0",
        "--",
    ]


def _join(cgroup: list[Path]) -> list[str]:
    if not cgroup:
        return []
    return ["/bin/sh", "-c", _JOIN, "sh", *(str(c / "cgroup.procs") for c in cgroup), "--"]


def holder_argv(bwrap: str, cfg: BwrapConfig, uid: int | None, info_fd: int) -> list[str]:
    """``bwrap`` running the idle anchor in the jail's namespaces (no host folder mounted)."""
    argv = [bwrap, "--ro-bind", "/usr", "/usr"]
    for link in ("bin", "lib", "lib64", "sbin"):
        if Path("/", link).is_symlink():
            argv += ["--symlink", f"usr/{link}", f"/{link}"]
        elif Path("/", link).is_dir():
            argv += ["--ro-bind", f"/{link}", f"/{link}"]
    for etc in ("ld.so.cache", "alternatives", "localtime"):
        argv += ["--ro-bind-try", f"/etc/{etc}", f"/etc/{etc}"]
    # /dev by hand (bwrap's --dev would nest a user namespace nsenter cannot follow), read-only
    # but for its device nodes and a small /dev/shm
    argv += ["--tmpfs", "/dev"]
    for dev in ("null", "zero", "full", "random", "urandom", "tty"):
        argv += ["--dev-bind", f"/dev/{dev}", f"/dev/{dev}"]
    argv += ["--size", str(cfg.shm_mb * MB), "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
    argv += ["--proc", "/proc"]
    argv += ["--size", str(cfg.tmp_mb * MB), "--perms", "1777", "--tmpfs", "/tmp"]
    argv += ["--size", str(cfg.work_mb * MB), "--perms", "0700", "--tmpfs", "/work"]
    argv += ["--remount-ro", "/", "--unshare-all", "--unshare-user", "--disable-userns"]
    argv += ["--die-with-parent", "--new-session", "--clearenv", "--info-fd", str(info_fd)]
    argv += ["--", "/usr/bin/cat"]
    setpriv = [] if uid is None else ["setpriv", f"--reuid={uid}", f"--regid={uid}"]
    return setpriv + (["--clear-groups"] if setpriv else []) + argv


class Holder:
    """A running jail: the holder process and the namespace fds commands are entered through."""

    def __init__(self, bwrap: str, cfg: BwrapConfig, uid: int | None, cgroup: list[Path]):
        self.cfg, self.uid, self.cgroup = cfg, uid, cgroup
        self.fds: dict[str, int] = {}
        read, write = os.pipe()
        argv = holder_argv(bwrap, cfg, uid, write)
        try:
            self.proc = subprocess.Popen(
                _join(cgroup) + _limits(cfg, uid, bool(cgroup)) + argv,
                stdin=subprocess.PIPE,  # the anchor: the jail ends when this pipe closes
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(write,),
                start_new_session=True,
            )
        finally:
            os.close(write)
        with os.fdopen(read, "rb") as info:
            raw = info.read()
        try:
            self._attach(json.loads(raw)["child-pid"])
        except (ValueError, KeyError, OSError) as exc:
            self.close()
            err = (
                self.proc.stderr.read().decode(errors="replace").strip() if self.proc.stderr else ""
            )
            raise OSError(f"bubblewrap could not start the jail: {err.strip() or exc}") from None
        if self.proc.stderr is not None:
            self.proc.stderr.close()

    def _attach(self, init: int) -> None:
        """Wait for the anchor to run, then hold its namespaces, root and the init's pidfd."""
        self.fds["pidfd"] = os.pidfd_open(init)
        deadline = time.monotonic() + 10
        while True:
            kids = Path(f"/proc/{init}/task/{init}/children").read_text().split()
            if kids and Path(f"/proc/{kids[0]}/comm").read_text().strip() == "cat":
                break
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise OSError("the jail did not start")
            time.sleep(0.005)
        anchor = f"/proc/{kids[0]}"
        for ns in ("mnt", "net", "ipc", "uts", "pid", "cgroup"):
            self.fds[ns] = os.open(f"{anchor}/ns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
        inner = os.open(f"{anchor}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
        try:
            # --disable-userns leaves the anchor in a nested user namespace that owns nothing;
            # commands enter its parent, which owns the others and can make no further one
            self.fds["user"] = fcntl.ioctl(inner, _NS_GET_PARENT)
            os.set_inheritable(self.fds["user"], False)
        finally:
            os.close(inner)
        self.fds["root"] = os.open(f"{anchor}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)

    def enter_argv(self, cwd: str, env: dict[str, str]) -> list[str]:
        """The prefix that runs a command inside the jail, in ``cwd`` with exactly ``env``."""
        me = f"/proc/{os.getpid()}/fd"
        argv = _join(self.cgroup) + _limits(self.cfg, self.uid, bool(self.cgroup))
        if self.uid is not None:
            argv += ["setpriv", f"--regid={self.uid}", "--clear-groups"]
        argv += ["nsenter", f"--user={me}/{self.fds['user']}"]
        for ns, flag in (("mnt", "mount"), ("net", "net"), ("ipc", "ipc"), ("uts", "uts")):
            argv.append(f"--{flag}={me}/{self.fds[ns]}")
        argv += [f"--cgroup={me}/{self.fds['cgroup']}", f"--pid={me}/{self.fds['pid']}"]
        argv.append(f"--root={me}/{self.fds['root']}")
        if self.uid is not None:
            argv += [f"--setuid={self.uid}", f"--setgid={self.uid}"]
        else:
            argv.append("--preserve-credentials")
        argv += ["--", "/usr/bin/setpriv", "--no-new-privs", "--", "/usr/bin/env", "-i", "-C", cwd]
        # after "--" env reads NAME=VALUE words, then the command (resolved through that PATH)
        return argv + ["--", *(f"{k}={v}" for k, v in env.items())]

    def kill_group(self, pgid: int) -> None:
        """SIGKILL every process of the jail in process group ``pgid`` (one command's jobs).

        Only processes in the jail's PID namespace are candidates, each checked and signalled
        through a pidfd, so a reused number outside the jail is never hit.
        """
        jail_ns = os.fstat(self.fds["pid"]).st_ino if "pid" in self.fds else None
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fd = os.pidfd_open(int(entry.name))
            except OSError:
                continue
            try:
                stat = (entry / "stat").read_text()
                group = int(stat.rsplit(")", 1)[1].split()[2])
                if group == pgid and (entry / "ns" / "pid").stat().st_ino == jail_ns:
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass
            finally:
                os.close(fd)

    def alive(self) -> bool:
        """Whether the jail's init still runs."""
        if self.proc.poll() is not None or "pidfd" not in self.fds:
            return False
        try:
            signal.pidfd_send_signal(self.fds["pidfd"], 0)
        except ProcessLookupError:
            return False
        return True

    def close(self) -> None:
        """Kill the jail's init (the kernel then kills every process of its PID namespace)."""
        if "pidfd" in self.fds:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self.fds["pidfd"], signal.SIGKILL)
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()
