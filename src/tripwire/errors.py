"""tripwire's exceptions.

::

    TripwireError                 root; exit code 1
    ├── UsageError (ValueError)   bad input from the user; exit code 2, nothing written
    │   ├── ModelLoadError        unknown spec, missing/corrupt files, uncached hub id, bad adapter
    │   └── DataError             a malformed prompt/eval file
    ├── LayerResolutionError      decoder blocks could not be found (LookupError)
    └── NotFittedError            a detector was used before ``fit`` (ValueError, AttributeError)

Every message is one line that says what is wrong and how to fix it.
"""

from __future__ import annotations


class TripwireError(Exception):
    """Root of tripwire's exceptions."""

    exit_code: int = 1


class UsageError(TripwireError, ValueError):
    """The user's input is wrong; the message says how to fix it."""

    exit_code = 2


class ModelLoadError(UsageError):
    """A model or adapter could not be loaded from local files."""


class DataError(UsageError):
    """A data file (prompts, eval set) is malformed."""


class LayerResolutionError(TripwireError, LookupError):
    """The decoder blocks of a model could not be located."""


class NotFittedError(TripwireError, ValueError, AttributeError):
    """A detector or vector was used before it was fitted."""


__all__ = [
    "DataError",
    "LayerResolutionError",
    "ModelLoadError",
    "NotFittedError",
    "TripwireError",
    "UsageError",
]
