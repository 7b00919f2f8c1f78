"""Child processes that die with their parent: the drift-calibration worker must not outlive a
``tripwire serve`` killed with SIGKILL (no shutdown hook runs then), and with it gone the
multiprocessing resource tracker, whose pipe it holds, sees end-of-file and exits too.

:func:`die_with_parent` runs first in the child (a ``ProcessPoolExecutor`` initializer). On Linux
it asks the kernel for SIGKILL when the parent goes (``prctl(PR_SET_PDEATHSIG)``), which works
even while the child is busy in C code; everywhere it also starts a thread that polls the parent
pid twice a second and exits once the child has been re-parented (the kernel's signal is tied to
the parent *thread* that spawned the child, so the poll is the backstop, not the other way round).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1
POLL_S = 0.5


def _watch(parent: int) -> None:
    while os.getppid() == parent:
        threading.Event().wait(POLL_S)
    os._exit(1)


def die_with_parent(parent: int) -> None:
    """Make this process exit when process ``parent`` (its parent) dies."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the poll below still holds
            pass
    if os.getppid() != parent:  # the parent died before we got here
        os._exit(1)
    threading.Thread(target=_watch, args=(parent,), name="tripwire-lifeline", daemon=True).start()


__all__ = ["die_with_parent"]
