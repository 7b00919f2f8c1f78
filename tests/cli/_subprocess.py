"""The environment for a ``tripwire`` subprocess started from a test in another folder."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path


@functools.cache
def _installed_src() -> str | None:
    """Where this interpreter imports ``tripwire`` from without ``PYTHONPATH``, if anywhere."""
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", "import tripwire; print(tripwire.__file__)"],
        capture_output=True,
        text=True,
        env=clean,
        check=False,
    )
    return str(Path(proc.stdout.strip()).resolve().parents[1]) if proc.returncode == 0 else None


def env() -> dict[str, str]:
    """``os.environ`` with the tripwire under test first on ``PYTHONPATH`` (a relative
    ``PYTHONPATH=src`` would not survive the subprocess's own working folder).

    When the interpreter's own install already is the tripwire under test (``make test`` on a
    clone: an editable install of it), ``PYTHONPATH`` is left alone: putting ``src`` on it
    beside the install's ``src/tripwire.egg-info`` makes Inspect lose the package name it
    namespaces tasks with (``tripwire/<task>`` becomes ``<task>``)."""
    import tripwire

    here = str(Path(tripwire.__file__).resolve().parents[1])
    if _installed_src() == here:
        return dict(os.environ)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
