"""The environment for a ``tripwire`` subprocess started from a test in another folder."""

from __future__ import annotations

import os
from pathlib import Path


def env() -> dict[str, str]:
    """``os.environ`` with the tripwire under test first on ``PYTHONPATH`` (a relative
    ``PYTHONPATH=src`` would not survive the subprocess's own working folder)."""
    import tripwire

    here = str(Path(tripwire.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
