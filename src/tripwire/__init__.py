"""tripwire: catch the misalignment that a language model's outputs hide.

The top-level package has no import-time side effects; import the rooms you need:
``tripwire.models`` (loading), ``tripwire.whitebox`` (capture, detectors, metrics, concepts,
steering), ``tripwire.checks`` (the studies built on it), ``tripwire.organisms`` (positive
controls), ``tripwire.behavior`` (Inspect scenarios), ``tripwire.runtime`` (the watch service),
``tripwire.audit`` (the risk report) and ``tripwire.stats`` (every interval, once).
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
