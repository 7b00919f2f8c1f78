"""Checks on a command's inputs that run before any work (and before any model loads).

Every output path is checked to be writable before the first byte of work: a results file must
not be a folder and its nearest existing folder must be writable; an output folder must not be a
file. Input files must exist and be files. Model options go through
:func:`tripwire.models.preflight.check_load` (dtype, device, spec, adapter and its base). Each
failure is a :class:`~tripwire.errors.UsageError`: one line, exit code 2, nothing written.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from tripwire.errors import UsageError


def _nearest_existing(path: Path) -> Path:
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _can_write_in(folder: Path) -> bool:
    """Whether a file can be created in ``folder``: tried, not guessed from the mode bits (which
    say nothing for root, for read-only mounts or for pseudo-filesystems such as /proc)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".tripwire-write-check-"):
            return True
    except OSError:
        return False


def _check_can_create(path: Path, flag: str) -> None:
    """The nearest existing folder above ``path`` is a folder this process may write in."""
    above = _nearest_existing(path.expanduser().absolute().parent)
    if not above.is_dir():
        raise UsageError(f"{flag} {path}: {above} is a file, not a folder; give another path")
    if not _can_write_in(above):
        raise UsageError(f"{flag} {path}: cannot write in {above} (permission denied)")


def check_out_file(path: Path | None, flag: str = "--out") -> None:
    """A file to write: not a folder, and creatable (its folder writable or creatable)."""
    if path is None:
        return
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a folder; give a file path")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{flag} {path} is not writable (permission denied)")
    _check_can_create(path, flag)


def check_out_dir(path: Path | None, flag: str = "--out") -> None:
    """A folder to write into: not a file, and writable or creatable."""
    if path is None:
        return
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"{flag} {path} exists and is not a folder")
        if not _can_write_in(path):
            raise UsageError(f"{flag} {path}: cannot write in it (permission denied)")
        return
    _check_can_create(path, flag)


def check_in_file(path: Path | None, flag: str, stdin: bool = False) -> None:
    """A file to read: it exists, is a file and is readable (``-`` where ``stdin`` allows)."""
    if path is None or (stdin and str(path) == "-"):
        return
    if not path.exists():
        raise UsageError(f"{flag} {path} does not exist")
    if path.is_dir():
        raise UsageError(f"{flag} {path} is a folder; give a file")
    if not os.access(path, os.R_OK):
        raise UsageError(f"{flag} {path} is not readable (permission denied)")


def check_device(device: str) -> None:
    """``--device`` names a device this machine has."""
    from tripwire.models.preflight import check_device as check

    check(device)


def check_model(
    model: str, adapter: Path | None = None, device: str = "cpu", dtype: str = "float32"
) -> None:
    """The model options, checked without loading the model."""
    from tripwire.models.preflight import check_load

    check_load(model, adapter, dtype, device)


__all__ = ["check_device", "check_in_file", "check_model", "check_out_dir", "check_out_file"]
