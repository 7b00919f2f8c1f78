"""How the behaviour room is put together: one file per family, one registered task factory,
a public API in ``tripwire.behavior``, and imports that point one way."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
from inspect_ai import Task
from inspect_ai.util import registry_create, registry_info

import tripwire
import tripwire.behavior as behavior
from tripwire.behavior import FAMILIES, scenarios
from tripwire.behavior.sandbox import SANDBOX_NAME, SandboxUnavailable
from tripwire.behavior.scenarios import TASKS
from tripwire.errors import UsageError

ROOM = Path(behavior.__file__).parent
OPTIONS = ["condition", "interrogation", "per_condition", "variants", "epochs", "sandbox"]

PUBLIC = [
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


def test_the_public_api_is_pinned_and_every_name_resolves() -> None:
    assert behavior.__all__ == PUBLIC
    for name in PUBLIC:
        assert getattr(behavior, name) is not None, name
    assert set(PUBLIC) <= set(dir(behavior))
    with pytest.raises(AttributeError):
        _ = behavior.no_such_name  # type: ignore[attr-defined]


def test_importing_the_room_does_not_import_inspect() -> None:
    """``tripwire --help`` mounts ``tripwire eval`` and must not pay for (or need) Inspect."""
    src = str(Path(tripwire.__file__).parents[1])
    code = "import sys, tripwire.behavior, tripwire.cli.eval; print('inspect_ai' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": src},
        check=True,
    )
    assert out.stdout.strip() == "False"


def test_every_scenario_file_is_a_family_and_a_task_in_number_order() -> None:
    files = sorted(p.stem for p in (ROOM / "scenarios").glob("[!_]*.py"))
    modules = [f"tripwire.behavior.scenarios.{stem}" for stem in files]
    by_module = {sys.modules[m].FAMILY.name: m for m in modules}
    assert set(by_module) == set(TASKS) and len(TASKS) == 12
    numbers = [FAMILIES[name].number for name in TASKS]
    assert numbers == sorted(numbers) == list(range(1, 13))
    for name, factory in TASKS.items():
        info = registry_info(factory)
        assert info.name == f"tripwire/{name}" and info.type == "task"
        assert info.metadata["params"] == OPTIONS
        assert factory.__module__ == by_module[name]
        assert getattr(scenarios, name) is factory  # `from ...scenarios import sandbagging`


def test_adding_a_family_is_adding_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "zz_extra.py").write_text(
        "from tripwire.behavior import Family, Say, Verdict, sample\n\n\n"
        "async def _check(state):\n    return Verdict(0.0, 'ok')\n\n\n"
        "FAMILY = Family(\n"
        "    name='zz_extra', title='Extra', summary='a test family',\n"
        "    samples=lambda: [sample('zz_extra', 'control', True, 'hi')],\n"
        "    check=_check, plan=lambda meta, policy: [Say('hello')],\n"
        ")\n"
    )
    (tmp_path / "_helpers.py").write_text("X = 1\n")  # private: not a family, not imported
    monkeypatch.setattr(scenarios, "__path__", [*scenarios.__path__, str(tmp_path)])
    try:
        found = scenarios._discover()
    finally:
        sys.modules.pop("tripwire.behavior.scenarios.zz_extra", None)
    names = [family.name for _, family in found]
    assert names == [*TASKS, "zz_extra"]  # unnumbered families come last
    assert "tripwire.behavior.scenarios._helpers" not in sys.modules
    (tmp_path / "zz_broken.py").write_text("NOT_A_FAMILY = 1\n")
    try:
        with pytest.raises(TypeError, match="zz_broken defines no FAMILY"):
            scenarios._discover()
    finally:
        for name in ("zz_extra", "zz_broken"):
            sys.modules.pop(f"tripwire.behavior.scenarios.{name}", None)


def _create(name: str, **args: object) -> Task:
    task = registry_create("task", name, **args)
    assert isinstance(task, Task)
    return task


def test_every_make_task_option_reaches_the_registered_task(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What ``inspect eval tripwire/goal_guarding -T ...`` does with its ``-T`` args."""
    task = _create(
        "tripwire/goal_guarding",
        condition=["control", "conflict"],
        interrogation=False,
        per_condition=1,
        variants=2,
        epochs=3,
        sandbox="bwrap",
    )
    assert [s.id for s in task.dataset] == [
        "goal_guarding/control",
        "goal_guarding/conflict",
    ]
    assert task.epochs == 3 and task.message_limit == FAMILIES["goal_guarding"].message_limit
    assert task.sandbox is not None and task.sandbox.type == SANDBOX_NAME
    assert [registry_info(s).name for s in task.scorer or []] == [
        "tripwire/scenario_outcome",
        "tripwire/eval_awareness",
    ]
    import tripwire.behavior.sandbox as sb

    monkeypatch.setattr(sb, "docker_available", lambda: False)
    with pytest.raises(SandboxUnavailable):
        _create("tripwire/goal_guarding", sandbox="docker")
    for bad in ({"variants": "two"}, {"epochs": 0}, {"per_condition": True}):
        with pytest.raises(UsageError, match="must be an integer"):
            _create("tripwire/sandbagging", **bad)


# Bottom-up layers of the room: a module may import only from its own layer's peers listed
# before it, or from lower layers. (import-linter enforces the whole package's layering.)
LAYERS = [
    {"text"},
    {"judge"},
    {"family"},
    {"scorers"},
    {"cgroup"},
    {"jail"},
    {"tools", "sandbox"},
    {"tasks"},
    {"scenarios"},
    {"local"},
    {"provider"},
    {"results"},
    {"runner"},
]


def _behavior_imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            if name.startswith("tripwire.behavior."):
                out.add(name.split(".")[2])
    return out


def test_imports_point_down_the_layers_and_scenarios_use_the_public_api() -> None:
    rank = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    for name, level in rank.items():
        path = ROOM / f"{name}.py"
        if not path.is_file():
            path = ROOM / name / "__init__.py"
        for dep in _behavior_imports(path):
            assert dep in rank and rank[dep] < level, f"{name} imports {dep}"
    for path in (ROOM / "scenarios").glob("[!_]*.py"):
        deps = _behavior_imports(path) - {"scenarios"}
        assert not deps, f"{path.name} imports tripwire.behavior.{deps}: use tripwire.behavior"
