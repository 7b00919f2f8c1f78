"""Studies built on the white-box toolkit, one file each, each with its shipped data.

* :mod:`~tripwire.checks.defection` - defection detectors on models tripwire did not build:
  contrast-pair probes, anomaly detection, model diffing, and the zoo leaderboard;
* :mod:`~tripwire.checks.probes` - defection and deception probes fit on contrast dialogues;
* :mod:`~tripwire.checks.tamper` - the guardrail tamper test (refusal direction ablated), built
  on :mod:`~tripwire.checks.refusal_direction`;
* :mod:`~tripwire.checks.plausibility` - event-plausibility (world-model) probes;
* :mod:`~tripwire.checks.eval_awareness` - evaluation-vs-deployment probe;
* :mod:`~tripwire.checks.checkpoint_drift` - concept drift between checkpoints;
* :mod:`~tripwire.checks.screen` - ranking fine-tuning examples by a trait.

A check imports the toolkit (:mod:`tripwire.whitebox`, :mod:`tripwire.models`,
:mod:`tripwire.stats`); the toolkit never imports a check.
"""

from tripwire.checks.checkpoint_drift import DriftResult, fit_directions, measure_drift
from tripwire.checks.defection import (
    DefectionReport,
    attach_null,
    probe,
    run_leaderboard,
)
from tripwire.checks.eval_awareness import EvalAwarenessResult, probe_eval_awareness
from tripwire.checks.plausibility import PlausibilityResult, probe_plausibility
from tripwire.checks.probes import ProbeReport, probe_on_dialogues
from tripwire.checks.screen import ScreenResult, screen
from tripwire.checks.tamper import TamperResult, tamper_test

__all__ = [
    "DefectionReport",
    "DriftResult",
    "EvalAwarenessResult",
    "PlausibilityResult",
    "ProbeReport",
    "ScreenResult",
    "TamperResult",
    "attach_null",
    "fit_directions",
    "measure_drift",
    "probe",
    "probe_eval_awareness",
    "probe_on_dialogues",
    "probe_plausibility",
    "run_leaderboard",
    "screen",
    "tamper_test",
]
