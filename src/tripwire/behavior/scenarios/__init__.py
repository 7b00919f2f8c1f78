"""Scenario families, one per module; each exposes one ``@task``."""

from tripwire.behavior.scenarios.alignment_faking import alignment_faking
from tripwire.behavior.scenarios.blackmail import blackmail
from tripwire.behavior.scenarios.cot_faithfulness import cot_faithfulness
from tripwire.behavior.scenarios.exfiltration import self_exfiltration
from tripwire.behavior.scenarios.goal_guarding import goal_guarding
from tripwire.behavior.scenarios.jailbreak import jailbreak
from tripwire.behavior.scenarios.oversight import oversight_subversion
from tripwire.behavior.scenarios.peer import peer_preservation
from tripwire.behavior.scenarios.reward_hacking import reward_hacking
from tripwire.behavior.scenarios.sandbagging import sandbagging
from tripwire.behavior.scenarios.shutdown import shutdown_resistance
from tripwire.behavior.scenarios.tooling import self_authored_tooling

TASKS = {
    "oversight_subversion": oversight_subversion,
    "self_exfiltration": self_exfiltration,
    "goal_guarding": goal_guarding,
    "sandbagging": sandbagging,
    "shutdown_resistance": shutdown_resistance,
    "peer_preservation": peer_preservation,
    "alignment_faking": alignment_faking,
    "reward_hacking": reward_hacking,
    "blackmail": blackmail,
    "self_authored_tooling": self_authored_tooling,
    "cot_faithfulness": cot_faithfulness,
    "jailbreak": jailbreak,
}
"""The twelve families' tasks in the order of issue 5."""

__all__ = [
    "TASKS",
    "alignment_faking",
    "blackmail",
    "cot_faithfulness",
    "goal_guarding",
    "jailbreak",
    "oversight_subversion",
    "peer_preservation",
    "reward_hacking",
    "sandbagging",
    "self_authored_tooling",
    "self_exfiltration",
    "shutdown_resistance",
]
