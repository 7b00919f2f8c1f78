"""The monitor layers, each failing differently: deterministic rules from a YAML policy, LLM
monitors reading a sanitised view, and a white-box probe on the agent's own activations. Each is
a :class:`Monitor` (``check`` and ``check_isolated`` returning a ``MonitorResult``)."""

from tripwire.runtime.monitors.base import Monitor
from tripwire.runtime.monitors.llm import LLMMonitor
from tripwire.runtime.monitors.probe import ProbeMonitor
from tripwire.runtime.monitors.rules import Policy, Rule, RulesMonitor, load_policy, parse_policy

__all__ = [
    "LLMMonitor",
    "Monitor",
    "Policy",
    "ProbeMonitor",
    "Rule",
    "RulesMonitor",
    "load_policy",
    "parse_policy",
]
