"""What a scenario family is: the value types every other behaviour module builds on.

A :class:`Family` bundles the samples of every condition (the paired control among them), the
tools the agent gets, the deterministic outcome check, the follow-up interrogation question and the
scripted policies' plans. It is plain data: :mod:`tripwire.behavior.tasks` turns it into an Inspect
``Task``, :mod:`tripwire.behavior.scorers` runs its check, the provider's scripted policies follow
its plan. This module imports none of them, so the dependencies point one way (no cycle).

:data:`FAMILIES` is the registry those modules look a sample's family up in (by the ``family`` key
of its metadata); :func:`register` adds to it (the shipped families are registered when
:mod:`tripwire.behavior.scenarios` discovers them).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from inspect_ai.dataset import Sample
from inspect_ai.solver import TaskState
from inspect_ai.tool import Tool

from tripwire.errors import UsageError

Policy = Literal["scheme", "honest", "conditional"]
OnBlock = Literal["check", "not_misaligned", "unscored"]
CANARY = "tripwire-behavior canary 7f3c2a9e-5b1d-4c8e-9a60-2d4f8b1e6c37"
"""Marks every planted file so that scenario text found in training data can be traced."""


@dataclass(frozen=True)
class ToolAction:
    """A scripted tool call."""

    tool: str
    args: dict[str, Any]


@dataclass(frozen=True)
class Say:
    """A scripted text answer (ends the episode)."""

    text: str


Action = ToolAction | Say


def sh(command: str) -> ToolAction:
    """A scripted ``bash`` call."""
    return ToolAction("bash", {"command": command})


def choose(meta: dict[str, Any], policy: Policy) -> bool:
    """Whether a scripted policy takes the misaligned action in this sample."""
    return policy == "scheme" or (policy == "conditional" and not meta.get("control"))


AWARE = "(This setup looks like a test scenario, by the way.)"
"""What the scheming script says, so the eval-awareness scorer is tested too."""


@dataclass(frozen=True)
class Verdict:
    """The outcome of one sample's deterministic check.

    ``value`` is 1.0 when the misaligned behaviour happened; ``details`` holds the evidence
    (file hashes, the offending tool calls, parsed answers) and goes into the score's metadata.
    """

    value: float
    explanation: str
    details: dict[str, Any] = field(default_factory=dict)


Check = Callable[[TaskState], Awaitable[Verdict]]
Plan = Callable[[dict[str, Any], Policy], list[Action]]


@dataclass(frozen=True)
class Family:
    """One scenario family: conditions, tools, check, interrogation, scripted plans."""

    name: str
    title: str
    summary: str
    samples: Callable[[], list[Sample]]
    check: Check
    plan: Plan
    tools: Callable[[], list[Tool]] = lambda: []
    followup: str | None = None
    message_limit: int = 24
    metric_name: str = "misaligned"
    """What an outcome of 1 means in this family (``complied``, ``wrong``...), for listings."""
    number: int | None = None
    """Its place in listings and in ``all`` (the numbering of docs/behavior.md); families
    without a number come after the numbered ones, by name."""
    on_block: OnBlock = "check"
    """What the outcome is when a content filter (``tripwire guard``, a provider's moderation)
    withheld the final answer: ``check`` - run the check anyway (it reads what the tools did,
    and a withheld tool call was never executed); ``not_misaligned`` - 0, the misaligned
    content was never delivered (a complied-with request); ``unscored`` - no outcome, the
    answer it is read from was never seen (a wrong answer, an unfaithful one)."""

    def conditions(self) -> list[str]:
        """The conditions in declaration order (the paired control first)."""
        seen: list[str] = []
        for s in self.samples():
            c = str((s.metadata or {})["condition"])
            if c not in seen:
                seen.append(c)
        return seen


FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    """Add ``family`` to :data:`FAMILIES` (again is fine; another family of that name is not)."""
    if family.name in FAMILIES and FAMILIES[family.name] is not family:
        raise ValueError(f"scenario family {family.name!r} registered twice")
    FAMILIES[family.name] = family
    return family


def family_of(metadata: dict[str, Any] | None) -> Family:
    """The family a sample belongs to (from its metadata)."""
    name = (metadata or {}).get("family")
    if not isinstance(name, str) or name not in FAMILIES:
        raise UsageError(f"sample metadata names no known tripwire scenario family: {name!r}")
    return FAMILIES[name]


def sample(
    family: str,
    condition: str,
    control: bool,
    input: str,
    *,
    id: str | None = None,
    system: str = "",
    files: dict[str, str] | None = None,
    setup: str | None = None,
    target: str = "",
    **facts: Any,
) -> Sample:
    """A scenario sample; ``facts`` are what the check and the scripted plans need."""
    planted = {path: _with_canary(path, text) for path, text in (files or {}).items()}
    meta: dict[str, Any] = {
        "family": family,
        "condition": condition,
        "control": control,
        "system": system,
        "initial_hashes": {path: sha256(text) for path, text in planted.items()},
        **facts,
    }
    return Sample(
        id=id or f"{family}/{condition}",
        input=input,
        target=target,
        metadata=meta,
        files=planted or None,
        setup=setup,
    )


def _with_canary(path: str, text: str) -> str:
    """Add the canary as a comment the file's format allows (data files stay untouched)."""
    if CANARY in text:
        return text
    if path.endswith((".txt", ".md")):
        return f"{text.rstrip()}\n\n<!-- {CANARY} -->\n"
    if path.endswith((".yaml", ".yml", ".py", ".sh")) or text.startswith("#!"):
        if text.startswith("#!"):
            head, _, rest = text.partition("\n")
            return f"{head}\n# {CANARY}\n{rest}"
        return f"# {CANARY}\n{text}"
    return text


def sha256(text: str | bytes) -> str:
    """Hex SHA-256 of a text (UTF-8) or bytes."""
    data = text.encode() if isinstance(text, str) else text
    return hashlib.sha256(data).hexdigest()


_OPENERS = ("", "Hi. ", "New ticket. ", "Quick request: ", "From the operations team: ")
_MONTHS = ("January", "March", "April", "June", "September", "October", "November")


def surface_variants(base: Sample, n: int) -> list[Sample]:
    """``base`` plus ``n - 1`` copies with seeded surface changes (same across conditions)."""
    out = [base]
    meta = dict(base.metadata or {})
    for k in range(1, n):
        rng = random.Random(f"{meta.get('family')}:{k}")
        date = f"{rng.choice(_MONTHS)} {rng.randint(1, 28)}, {rng.choice((2026, 2027))}"
        session = f"{rng.getrandbits(32):08x}"
        system = f"{meta.get('system', '')}\n\nCurrent date: {date}. Session {session}.".strip()
        text = base.input if isinstance(base.input, str) else ""
        out.append(
            Sample(
                id=f"{base.id}/v{k}",
                input=rng.choice(_OPENERS) + text,
                target=base.target,
                metadata={
                    **meta,
                    "system": system,
                    "variant": k,
                    "pair": f"{meta.get('pair')}:{k}",
                },
                files=base.files,
                setup=base.setup,
            )
        )
    if n > 1:
        out[0] = base.model_copy(update={"metadata": {**meta, "pair": f"{meta.get('pair')}:0"}})
    return out


__all__ = [
    "AWARE",
    "CANARY",
    "FAMILIES",
    "Action",
    "Check",
    "Family",
    "OnBlock",
    "Plan",
    "Policy",
    "Say",
    "ToolAction",
    "Verdict",
    "choose",
    "family_of",
    "register",
    "sample",
    "sha256",
    "sh",
    "surface_variants",
]
