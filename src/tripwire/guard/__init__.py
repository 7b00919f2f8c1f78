"""``tripwire guard``: a local model served behind detectors that read its own forward pass.

* :mod:`~tripwire.guard.backend` - the model interface (:class:`GuardBackend`) and its
  transformers implementation: one prefill fills the KV cache and hands over the residuals;
* :mod:`~tripwire.guard.engine` - the decode loop (sampling, ``n``, ``stop``, ``max_tokens``);
* :mod:`~tripwire.guard.monitor` - the prefill gate and the decode monitor;
* :mod:`~tripwire.guard.detectors`, :mod:`~tripwire.guard.rules` - guard detectors, their
  sidecar files and the sequential rules; :mod:`~tripwire.guard.calibrate` sets them;
* :mod:`~tripwire.guard.chat`, :mod:`~tripwire.guard.tools`, :mod:`~tripwire.guard.shapes` -
  OpenAI's request and response shapes;
* :mod:`~tripwire.guard.api` - :class:`Guard`, the in-process API; :mod:`~tripwire.guard.server`
  (needs the ``guard`` extra) serves it over HTTP with request batching.
"""

from tripwire.guard.api import Guard
from tripwire.guard.backend import GuardBackend, Readout, TransformersBackend
from tripwire.guard.detectors import GuardDetector, PrefillThresholds, load_detector
from tripwire.guard.monitor import Monitor, Verdict
from tripwire.guard.rules import DecodeRule

__all__ = [
    "DecodeRule",
    "Guard",
    "GuardBackend",
    "GuardDetector",
    "Monitor",
    "PrefillThresholds",
    "Readout",
    "TransformersBackend",
    "Verdict",
    "load_detector",
]
