"""tripwire: catch the misalignment that a language model's outputs hide.

The top-level package has no import-time side effects; import the rooms you need:
``tripwire.models`` (loading), ``tripwire.whitebox`` (capture, detectors, metrics, concepts,
steering) and ``tripwire.report`` (the risk report).
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
