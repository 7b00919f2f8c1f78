"""The shipped scenario families: one module each, found by looking, not by a list.

Every public module of this package (a name without a leading ``_``) defines ``FAMILY``, a
:class:`~tripwire.behavior.Family`; importing the package imports them all, registers each family
and its Inspect ``@task`` (``tripwire/<name>``, see :func:`tripwire.behavior.scenario_task`), and
fills :data:`TASKS` in the families' ``number`` order. Adding a family is adding one file here.
``_``-prefixed modules hold what several families share.
"""

from __future__ import annotations

import importlib
import pkgutil

from tripwire.behavior.family import Family
from tripwire.behavior.tasks import ScenarioTask, scenario_task


def _discover() -> list[tuple[str, Family]]:
    found: list[tuple[str, Family]] = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        family = getattr(module, "FAMILY", None)
        if not isinstance(family, Family):
            raise TypeError(f"scenario module {module.__name__} defines no FAMILY = Family(...)")
        found.append((module.__name__, family))
    names = [f.name for _, f in found]
    numbers = [f.number for _, f in found if f.number is not None]
    if len(set(names)) != len(names) or len(set(numbers)) != len(numbers):
        raise ValueError(f"scenario families share a name or a number: {sorted(names)}")
    big = max(numbers, default=0) + 1
    return sorted(found, key=lambda mf: (big if mf[1].number is None else mf[1].number, mf[1].name))


TASKS: dict[str, ScenarioTask] = {
    family.name: scenario_task(family, module) for module, family in _discover()
}
"""Every family's task by name, in the order of the families' numbers."""

# ``from tripwire.behavior.scenarios import sandbagging`` gives the task, as it always has.
globals().update(TASKS)

__all__ = ["TASKS", *TASKS]
