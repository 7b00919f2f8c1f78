"""Defection detection on models tripwire did not build: methods, honest figures, leaderboard.

* :mod:`~tripwire.checks.defection.pairs` - the generic contrast-pair probe (MacDiarmid et al.);
* :mod:`~tripwire.checks.defection.features` - what detectors read before output reaches a user;
* :mod:`~tripwire.checks.defection.methods` - the methods (pairs, anomaly detection, diffing);
* :mod:`~tripwire.checks.defection.evaluate` - every figure beside its control;
* :mod:`~tripwire.checks.defection.leaderboard` - every method on the zoo, leave one out;
* :mod:`~tripwire.checks.defection.probe` - one method on a user's model (``probe defection``).
"""

from tripwire.checks.defection.evaluate import MethodResult, ModelData, evaluate
from tripwire.checks.defection.features import Features, Prompt, extract
from tripwire.checks.defection.leaderboard import run_leaderboard
from tripwire.checks.defection.methods import METHODS, Method, get_method
from tripwire.checks.defection.pairs import LAYER_RULE, pair_set
from tripwire.checks.defection.probe import (
    DefectionReport,
    attach_null,
    load_eval_rows,
    probe,
)

__all__ = [
    "LAYER_RULE",
    "METHODS",
    "DefectionReport",
    "Features",
    "Method",
    "MethodResult",
    "ModelData",
    "Prompt",
    "attach_null",
    "evaluate",
    "extract",
    "get_method",
    "load_eval_rows",
    "pair_set",
    "probe",
    "run_leaderboard",
]
