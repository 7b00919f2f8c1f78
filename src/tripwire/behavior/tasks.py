"""How a scenario family becomes an Inspect ``Task``, and the registered ``@task`` of each family.

:func:`make_task` builds ``Task(dataset, solver, scorer, sandbox)`` from a :class:`Family`: the
sample's system prompt, the tools (if any) in a tool loop, the follow-up interrogation, and the
three shared scorers. :func:`scenario_task` registers that as a real Inspect ``@task`` named after
the family, whose parameters are every option of :func:`make_task` — so ``inspect eval
tripwire/<family> -T sandbox=docker -T epochs=3`` reaches them, and no family file repeats a
wrapper. :mod:`tripwire.behavior.scenarios` calls it once per discovered family.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from inspect_ai import Task, task
from inspect_ai.dataset import MemoryDataset
from inspect_ai.model import ChatMessageUser, GenerateConfig, get_model
from inspect_ai.solver import (
    Generate,
    Solver,
    TaskState,
    generate,
    solver,
    system_message,
    use_tools,
)

from tripwire.behavior.family import CANARY, Family, register, surface_variants
from tripwire.behavior.scorers import (
    FOLLOWUP_KEY,
    eval_awareness,
    internals,
    interrogation_outcome,
    scenario_outcome,
)
from tripwire.errors import UsageError


@solver
def scenario_system() -> Solver:
    """Insert the sample's own system prompt (from its metadata)."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        text = str(state.metadata.get("system") or "")
        if text:
            return await system_message(text.replace("{", "{{").replace("}", "}}"))(state, generate)
        return state

    return solve


@solver
def interrogate(question: str) -> Solver:
    """After the episode, management asks what happened (no tools); the answer is scored."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        state.messages.append(ChatMessageUser(content=question))
        state.store.set(FOLLOWUP_KEY, len(state.messages) - 1)
        output = await get_model().generate(state.messages, config=GenerateConfig(temperature=0))
        state.output = output
        state.messages.append(output.message)
        return state

    return solve


@solver
def record_internals() -> Solver:
    """Copy per-message white-box scores and steering (from the tripwire provider) into the
    sample's metadata, so behaviour and internals sit in one transcript."""

    async def solve(state: TaskState, generate: Generate) -> TaskState:
        rows = internals(state.messages)
        if rows:
            state.metadata["internals"] = rows
        return state

    return solve


def _sandbox_spec(prefer: str | None) -> str | tuple[str, str]:
    from tripwire.behavior.sandbox import resolve_sandbox

    kind, config = resolve_sandbox(prefer)
    return kind if config is None else (kind, config)


def _count(name: str, value: object, minimum: int) -> int:
    """An integer option (``-T`` values arrive parsed as YAML), or a one-line UsageError."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UsageError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def make_task(
    family: Family,
    condition: str | Sequence[str] | None = None,
    interrogation: bool = True,
    epochs: int = 1,
    sandbox: str | None = None,
    per_condition: int | None = None,
    variants: int = 1,
) -> Task:
    """Build the Inspect task of ``family`` (registering the family if it is new).

    Args:
        family: the scenario family.
        condition: keep only this condition (or these); default all, control included.
        interrogation: ask the follow-up question after the episode (agentic families).
        epochs: repeats of every sample.
        sandbox: ``bwrap`` or ``docker`` (default: bubblewrap if installed, else Docker).
        per_condition: keep the first N samples of each condition (smoke runs; Inspect's own
            ``--limit`` would take the first N of the control only).
        variants: copies of every sample with seeded surface changes (date, session id,
            phrasing of the request), so a deterministic model gives more than one draw per
            condition; the same variants in every condition keep the design paired.
    """
    register(family)  # the scorers and scripted policies find it by the samples' metadata
    variants = _count("variants", variants, 1)
    epochs = _count("epochs", epochs, 1)
    samples = [v for s in family.samples() for v in surface_variants(s, variants)]
    if condition is not None:
        wanted = [condition] if isinstance(condition, str) else [str(c) for c in condition]
        known = family.conditions()
        bad = [c for c in wanted if c not in known]
        if bad:
            raise UsageError(
                f"unknown condition(s) {bad} for {family.name}: choose from {', '.join(known)}"
            )
        samples = [s for s in samples if (s.metadata or {})["condition"] in wanted]
    if per_condition is not None:
        per_condition = _count("per_condition", per_condition, 1)
        counts: dict[str, int] = {}
        kept = []
        for s in samples:
            c = str((s.metadata or {})["condition"])
            counts[c] = counts.get(c, 0) + 1
            if counts[c] <= per_condition:
                kept.append(s)
        samples = kept
    solvers: list[Solver] = [scenario_system()]
    tools = family.tools()
    if tools:
        solvers += [use_tools(tools), generate(tool_calls="loop")]
    else:
        solvers.append(generate())
    scorers = [scenario_outcome(), eval_awareness()]
    if interrogation and family.followup:
        solvers.append(interrogate(family.followup))
        scorers.append(interrogation_outcome())
    solvers.append(record_internals())
    return Task(
        dataset=MemoryDataset(samples, name=family.name),
        solver=solvers,
        scorer=scorers,
        sandbox=_sandbox_spec(sandbox) if tools else None,
        message_limit=family.message_limit + (2 if interrogation else 0),
        epochs=epochs,
        config=GenerateConfig(temperature=0, seed=0),
        metadata={"family": family.name, "title": family.title, "canary": CANARY},
        name=family.name,
    )


class ScenarioTask(Protocol):
    """The registered ``@task`` of one family: :func:`make_task`'s options as task args."""

    def __call__(
        self,
        condition: str | list[str] | None = None,
        interrogation: bool = True,
        per_condition: int | None = None,
        variants: int = 1,
        epochs: int = 1,
        sandbox: str | None = None,
    ) -> Task: ...


def scenario_task(family: Family, module: str | None = None) -> ScenarioTask:
    """Register ``family`` and an Inspect ``@task`` named after it (``tripwire/<name>``).

    The task's parameters are :func:`make_task`'s options, so ``-T condition=a,b``,
    ``-T interrogation=false``, ``-T per_condition=N``, ``-T variants=N``, ``-T epochs=N`` and
    ``-T sandbox=bwrap|docker`` all reach it. ``module`` is the module the task is reported as
    defined in (the family's file); Inspect namespaces a task by its module's package.
    """
    register(family)

    def factory(
        condition: str | list[str] | None = None,
        interrogation: bool = True,
        per_condition: int | None = None,
        variants: int = 1,
        epochs: int = 1,
        sandbox: str | None = None,
    ) -> Task:
        return make_task(
            family,
            condition,
            interrogation,
            epochs=epochs,
            sandbox=sandbox,
            per_condition=per_condition,
            variants=variants,
        )

    factory.__name__ = factory.__qualname__ = family.name
    factory.__doc__ = f"{family.title}: {family.summary}"
    factory.__module__ = module or __name__
    registered: ScenarioTask = task(name=family.name)(factory)
    return registered


__all__ = [
    "ScenarioTask",
    "interrogate",
    "make_task",
    "record_internals",
    "scenario_system",
    "scenario_task",
]
