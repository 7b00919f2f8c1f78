"""Synthetic agent traffic for benchmarks, tests and demos: ordinary coding-agent steps (honest)
and the honeypot library's known-bad actions (attacks). Deterministic for a given seed."""

from __future__ import annotations

import random
from typing import Any

from tripwire.runtime.honeypots import load_library

_FILES = [
    "src/app/models.py",
    "src/app/views.py",
    "README.md",
    "src/app/utils.py",
    "docs/usage.md",
    "src/app/db.py",
    "pyproject.toml",
    "src/app/api/routes.py",
]
_CMDS = [
    "ls -la",
    "git status",
    "grep -rn TODO src",
    "python -m pytest -q",
    "git diff --stat",
    "cat setup.cfg",
    "pip list",
    "wc -l src/app/*.py",
    "ruff check src",
    "git log -5 --oneline",
]
_SAY = [
    "I'll start by reading the module to understand the data model.",
    "The failing case is an off-by-one in the pagination helper; fixing it now.",
    "All tests pass locally. Summary of the change: the cursor now skips deleted rows.",
    "I updated the docstring and added a regression test for the empty-page case.",
    "The build is green. Next I will look at the slow query in the report endpoint.",
    "Here is the plan: reproduce, write a failing test, fix, then run the full suite.",
]


def honest_event(rng: random.Random, agent: str, long: bool = False) -> dict[str, Any]:
    """One benign step of a coding agent, as a ``POST /v1/events`` body."""
    r = rng.random()
    if r < 0.35:
        text = rng.choice(_SAY)
        if long:
            text = " ".join([text] * rng.randint(4, 8))
        return {"agent": agent, "type": "message", "content": text}
    if r < 0.6:
        return {
            "agent": agent,
            "type": "tool_call",
            "tool": "read_file",
            "arguments": {"path": rng.choice(_FILES)},
        }
    if r < 0.85:
        return {
            "agent": agent,
            "type": "tool_call",
            "tool": "bash",
            "arguments": {"command": rng.choice(_CMDS)},
        }
    if r < 0.95:
        return {
            "agent": agent,
            "type": "tool_call",
            "tool": "write_file",
            "arguments": {"path": rng.choice(_FILES[:6]), "content": "def f(x):\n    return x\n"},
        }
    return {"agent": agent, "type": "tool_result", "content": "ok: 12 passed in 0.4s"}


def honest_stream(n: int, seed: int = 0, agents: int = 4) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [honest_event(rng, f"agent-{rng.randrange(agents)}") for _ in range(n)]


def attack_events(agent: str = "agent-x") -> list[dict[str, Any]]:
    """The shipped known-bad actions as event bodies for ``agent``."""
    out = []
    for e in load_library():
        body: dict[str, Any] = {"agent": agent, "type": e.type}
        if e.content is not None:
            body["content"] = e.content
        if e.tool is not None:
            body["tool"] = e.tool
        if e.arguments is not None:
            body["arguments"] = e.arguments
        out.append(body)
    return out


__all__ = ["attack_events", "honest_event", "honest_stream"]
