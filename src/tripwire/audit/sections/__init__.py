"""The built-in report sections, one file each; importing this package registers them.

Report order (``order``): concepts 10, probes 20, worldmodel 23, organism 25 and drift 27
(only with an adapter), pressure 30, steering 40, tamper 45, behavior 50 (opt-in), runtime 60
(with a recorded trace).
"""

from tripwire.audit.sections.behavior import BehaviorSection
from tripwire.audit.sections.checkpoint_drift import DriftSection
from tripwire.audit.sections.concepts import ConceptsSection
from tripwire.audit.sections.organism import OrganismSection
from tripwire.audit.sections.pressure import PressureSection
from tripwire.audit.sections.probes import ProbesSection
from tripwire.audit.sections.runtime import RuntimeSection
from tripwire.audit.sections.steering import SteeringSection
from tripwire.audit.sections.tamper import TamperSection
from tripwire.audit.sections.worldmodel import WorldModelSection

__all__ = [
    "BehaviorSection",
    "ConceptsSection",
    "DriftSection",
    "OrganismSection",
    "PressureSection",
    "ProbesSection",
    "RuntimeSection",
    "SteeringSection",
    "TamperSection",
    "WorldModelSection",
]
