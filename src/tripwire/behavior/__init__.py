"""Test behaviour: Inspect scenario tasks, scorers, the ``tripwire/...`` provider and a sandbox.

A scenario family is one file in :mod:`tripwire.behavior.scenarios` defining
``FAMILY = Family(...)``; everything such a file needs is importable from here::

    from tripwire.behavior import AWARE, Family, Say, Verdict, choose, final_answer, sample

The layers, bottom up: :mod:`~tripwire.behavior.family` (value types and the family registry),
:mod:`~tripwire.behavior.scorers` (episode readers and the three shared scorers),
:mod:`~tripwire.behavior.tools` (agent tools and sandbox reads), :mod:`~tripwire.behavior.tasks`
(``make_task`` and the registered ``@task`` factory), then the families, the provider
(:mod:`~tripwire.behavior.provider`, :mod:`~tripwire.behavior.local`), the sandbox and the runner
(:mod:`~tripwire.behavior.runner`, :mod:`~tripwire.behavior.results`).

Names load on first use: ``tripwire eval --help`` and the rest of tripwire must not pay for
importing Inspect, and work without it (it is the ``behavior`` extra).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tripwire.behavior.family import (
        AWARE,
        CANARY,
        FAMILIES,
        Action,
        Check,
        Family,
        Plan,
        Policy,
        Say,
        ToolAction,
        Verdict,
        choose,
        family_of,
        register,
        sample,
        sh,
        sha256,
        surface_variants,
    )
    from tripwire.behavior.judge import ADMITS, REFUSES, VERBALISES, ask
    from tripwire.behavior.results import Row, table
    from tripwire.behavior.runner import behavior_audit, run_scenarios, steering_comparison
    from tripwire.behavior.scorers import (
        assistant_text,
        eval_awareness,
        final_answer,
        interrogation_outcome,
        scenario_outcome,
        tool_calls,
        tool_outputs,
    )
    from tripwire.behavior.tasks import ScenarioTask, make_task, scenario_task
    from tripwire.behavior.text import answer_letter, complied, final_int, is_refusal
    from tripwire.behavior.tools import (
        SYSTEM_AGENT,
        agent_tools,
        canary_free,
        changed,
        commands,
        digest,
        evidence,
        fields,
        listing,
        python_only,
        read,
        send_email,
    )

_WHERE: dict[str, tuple[str, str]] = {}
"""Exported name -> (submodule, name there)."""
for _module, _names in {
    "family": (
        "AWARE CANARY FAMILIES Action Check Family Plan Policy Say ToolAction Verdict choose "
        "family_of register sample sh sha256 surface_variants"
    ),
    "judge": "ADMITS REFUSES VERBALISES ask",
    "results": "Row table",
    "runner": "behavior_audit run_scenarios steering_comparison",
    "scorers": (
        "assistant_text eval_awareness final_answer interrogation_outcome scenario_outcome "
        "tool_calls tool_outputs"
    ),
    "tasks": "ScenarioTask make_task scenario_task",
    "text": "answer_letter complied final_int is_refusal",
    "tools": (
        "SYSTEM_AGENT agent_tools canary_free changed commands digest evidence fields listing "
        "python_only read send_email"
    ),
}.items():
    _WHERE.update({name: (_module, name) for name in _names.split()})


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{where[0]}"), where[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


__all__ = [
    "ADMITS",
    "AWARE",
    "CANARY",
    "FAMILIES",
    "REFUSES",
    "SYSTEM_AGENT",
    "VERBALISES",
    "Action",
    "Check",
    "Family",
    "Plan",
    "Policy",
    "Row",
    "Say",
    "ScenarioTask",
    "ToolAction",
    "Verdict",
    "agent_tools",
    "answer_letter",
    "ask",
    "assistant_text",
    "behavior_audit",
    "canary_free",
    "changed",
    "choose",
    "commands",
    "complied",
    "digest",
    "eval_awareness",
    "evidence",
    "family_of",
    "fields",
    "final_answer",
    "final_int",
    "interrogation_outcome",
    "is_refusal",
    "listing",
    "make_task",
    "python_only",
    "read",
    "register",
    "run_scenarios",
    "sample",
    "scenario_outcome",
    "scenario_task",
    "send_email",
    "sh",
    "sha256",
    "steering_comparison",
    "surface_variants",
    "table",
    "tool_calls",
    "tool_outputs",
]
