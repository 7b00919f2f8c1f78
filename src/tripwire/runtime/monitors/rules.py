"""Deterministic rules from a YAML policy: forbidden tools, protected paths, exfiltration patterns,
self-written executables. No model is involved, so this layer fails differently from AI monitors.

Patterns are RE2 (:mod:`tripwire.runtime.linear_re`), so one rule costs time linear in the text
it scans; a pattern RE2 cannot compile is refused when the policy loads. Each field of an event
(tool name, JSON arguments, content) is scanned up to ``SCAN_CHARS_PER_FIELD`` characters, the
largest field ``POST /v1/events`` accepts; an event with a longer field (possible only from
callers that skip that validation) is scanned up to the limit and blocked as
``text-over-scan-limit``, since what lies beyond was not read.
"""

from __future__ import annotations

import fnmatch
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from tripwire.errors import UsageError
from tripwire.runtime.events import (
    ACTIONS,
    MAX_ARGUMENTS_BYTES,
    MAX_CONTENT_CHARS,
    Action,
    Event,
    MonitorResult,
)
from tripwire.runtime.linear_re import PatternError, Regex, compile_linear, escape

_ARG_PATH_KEYS = ("path", "file", "filename", "file_path", "filepath", "target", "dest")
_MAX_WRITTEN_PER_AGENT = 512
_MAX_AGENTS = 10_000
_MAX_PATH_CHARS = 1024  # longer written paths are not remembered (no real path is that long)
SCAN_CHARS_PER_FIELD = max(MAX_CONTENT_CHARS, MAX_ARGUMENTS_BYTES)
OVER_SCAN_LIMIT = "text-over-scan-limit"


@dataclass(frozen=True)
class Rule:
    """One policy rule; see the comment at the top of the default policy for the fields."""

    id: str
    score: float
    action: Action
    description: str = ""
    kind: str = "match"
    types: frozenset[str] = frozenset()
    tools: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    write_tools: tuple[str, ...] = ()
    exec_tools: tuple[str, ...] = ()


@dataclass(frozen=True)
class Policy:
    name: str
    rules: tuple[Rule, ...]
    source: str = ""


# Tool globs stay on ``re``: fnmatch translates each ``*`` to an atomic group (no backtracking)
# and a tool name is at most 200 characters on every ingest path.
@lru_cache(maxsize=256)
def _glob_re(globs: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile("|".join(f"(?:{fnmatch.translate(g.lower())})" for g in globs))


def compile_rule_pattern(pattern: str) -> Regex:
    """How rule patterns are compiled: RE2, case-insensitive, no captures."""
    return compile_linear(pattern, ignore_case=True, capture=False)


def _alternation(patterns: tuple[str, ...]) -> str:
    return "|".join(f"(?:{p})" for p in patterns)


@lru_cache(maxsize=4096)
def _mention_re(base: str) -> Regex:
    return compile_linear(rf"(^|[\s/'\"]){escape(base)}\b")


def _tool_in(tool: str | None, globs: tuple[str, ...]) -> bool:
    if not tool or not globs:
        return False
    return _glob_re(globs).match(tool.lower()) is not None


def _str_list(raw: dict[str, Any], key: str, rid: str) -> tuple[str, ...]:
    val = raw.get(key, [])
    if not isinstance(val, list) or not all(isinstance(x, str) for x in val):
        raise UsageError(f"policy rule {rid!r}: {key!r} must be a list of strings")
    return tuple(val)


def _parse_rule(raw: Any, i: int) -> Rule:
    if not isinstance(raw, dict):
        raise UsageError(f"policy rule #{i + 1} is not a mapping")
    rid = raw.get("id")
    if not isinstance(rid, str) or not rid:
        raise UsageError(f"policy rule #{i + 1} has no 'id'")
    known = {"id", "description", "kind", "types", "tools", "patterns", "score", "action"}
    known |= {"write_tools", "exec_tools"}
    unknown = set(raw) - known
    if unknown:
        raise UsageError(f"policy rule {rid!r}: unknown field(s) {sorted(unknown)}")
    score = raw.get("score", 1.0)
    if not isinstance(score, int | float) or not 0.0 <= float(score) <= 1.0:
        raise UsageError(f"policy rule {rid!r}: score must be a number in [0, 1]")
    action = raw.get("action", "flag")
    if action not in ACTIONS:
        raise UsageError(f"policy rule {rid!r}: action must be one of {', '.join(ACTIONS)}")
    kind = raw.get("kind", "match")
    if kind not in ("match", "written_then_executed"):
        raise UsageError(f"policy rule {rid!r}: kind must be 'match' or 'written_then_executed'")
    types = _str_list(raw, "types", rid)
    bad = set(types) - {"message", "tool_call", "tool_result"}
    if bad:
        raise UsageError(f"policy rule {rid!r}: unknown event type(s) {sorted(bad)}")
    pats = _str_list(raw, "patterns", rid)
    for p in pats:
        try:
            compile_rule_pattern(p)
        except PatternError as exc:
            raise UsageError(
                f"policy rule {rid!r}: bad pattern {p!r}: {exc} (patterns are RE2: no "
                "backreferences or lookaround)"
            ) from exc
    if pats:
        try:
            compile_rule_pattern(_alternation(pats))
        except PatternError as exc:
            raise UsageError(f"policy rule {rid!r}: patterns too large together: {exc}") from exc
    tools = _str_list(raw, "tools", rid)
    if kind == "match" and not tools and not pats:
        raise UsageError(f"policy rule {rid!r} needs 'tools' or 'patterns'")
    write_tools = _str_list(raw, "write_tools", rid)
    exec_tools = _str_list(raw, "exec_tools", rid)
    if kind == "written_then_executed" and not (write_tools and exec_tools):
        raise UsageError(f"policy rule {rid!r} needs 'write_tools' and 'exec_tools'")
    return Rule(
        id=rid,
        score=float(score),
        action=action,
        description=str(raw.get("description", "")),
        kind=kind,
        types=frozenset(types),
        tools=tools,
        patterns=pats,
        write_tools=write_tools,
        exec_tools=exec_tools,
    )


def parse_policy(text: str, source: str = "<string>") -> Policy:
    """Parse and validate a YAML policy; a bad one raises :class:`UsageError` naming the problem."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        line = str(exc).splitlines()[0] if str(exc) else "syntax error"
        raise UsageError(f"policy {source} is not valid YAML: {line}") from exc
    except RecursionError:
        raise UsageError(f"policy {source} is nested too deeply to be a policy") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("rules"), list):
        raise UsageError(f"policy {source} must be a mapping with a 'rules' list")
    rules = tuple(_parse_rule(r, i) for i, r in enumerate(raw["rules"]))
    ids = [r.id for r in rules]
    if len(set(ids)) != len(ids):
        raise UsageError(f"policy {source} has duplicate rule ids")
    return Policy(name=str(raw.get("name", "custom")), rules=rules, source=source)


def load_policy(path: str | Path | None = None) -> Policy:
    """Load ``path``, or the shipped default policy when ``path`` is None."""
    if path is None:
        text = resources.files("tripwire.runtime").joinpath("data/default_policy.yaml").read_text()
        return parse_policy(text, "default_policy.yaml")
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"policy file {p} does not exist")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"policy file {p} is not UTF-8 text (byte {exc.start})") from None
    return parse_policy(text, str(p))


def _written_path(event: Event) -> str | None:
    args = event.arguments or {}
    for k in _ARG_PATH_KEYS:
        v = args.get(k)
        if isinstance(v, str) and v.strip() and len(v.strip()) <= _MAX_PATH_CHARS:
            return v.strip()
    return None


def scan_text(event: Event) -> tuple[str, bool]:
    """The text the rules read (:meth:`Event.text`, each field cut at ``SCAN_CHARS_PER_FIELD``)
    and whether a field was cut."""
    fields = event.fields()
    if all(len(f) <= SCAN_CHARS_PER_FIELD for f in fields):
        return "\n".join(fields), False
    return "\n".join(f[:SCAN_CHARS_PER_FIELD] for f in fields), True


@dataclass
class RulesMonitor:
    """Scores an event by the highest-scoring policy rule it matches (0 when none).

    ``compiler`` turns a rule's patterns (one alternation per rule) into a matcher; it is RE2 and
    only the adversarial benchmark (``bench/rules.py``) passes another, to measure Python's ``re``.
    """

    policy: Policy
    name: str = "rules"
    trusted: bool = True
    threshold: float = 0.5
    compiler: Callable[[str], Regex] = compile_rule_pattern
    _written: OrderedDict[str, OrderedDict[str, None]] = field(default_factory=OrderedDict)
    _joined: dict[str, Regex] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for rule in self.policy.rules:
            if rule.patterns:
                self._joined[rule.id] = self.compiler(_alternation(rule.patterns))

    def matchers(self) -> dict[str, Regex]:
        """Each pattern rule's compiled matcher, by rule id."""
        return dict(self._joined)

    def _match(self, event: Event, remember: bool) -> MonitorResult:
        text, cut = scan_text(event)
        best = 1.0 if cut else 0.0
        action: Action | None = "block" if cut else None
        reasons: list[str] = [OVER_SCAN_LIMIT] if cut else []
        for rule in self.policy.rules:
            if rule.types and event.type not in rule.types:
                continue
            hit = False
            if rule.kind == "written_then_executed":
                hit = self._written_then_executed(rule, event, text, remember)
            else:
                if rule.tools and not _tool_in(event.tool, rule.tools):
                    continue
                pat = self._joined.get(rule.id)
                hit = pat is None or pat.search(text) is not None
            if hit:
                reasons.append(rule.id)
                if rule.score > best:
                    best = rule.score
                if action is None or ACTIONS.index(rule.action) > ACTIONS.index(action):
                    action = rule.action
        return MonitorResult(self.name, best, tuple(reasons), action)

    def _written_then_executed(self, rule: Rule, event: Event, text: str, remember: bool) -> bool:
        if event.type != "tool_call":
            return False
        written = self._written.get(event.agent)
        if _tool_in(event.tool, rule.exec_tools) and written:
            for path in written:
                base = path.rsplit("/", 1)[-1]
                if path in text or (len(base) >= 3 and _mention_re(base).search(text)):
                    return True
        if remember and _tool_in(event.tool, rule.write_tools):
            wpath = _written_path(event)
            if wpath:
                if written is None:
                    written = self._written.setdefault(event.agent, OrderedDict())
                    while len(self._written) > _MAX_AGENTS:
                        self._written.popitem(last=False)
                written[wpath] = None
                while len(written) > _MAX_WRITTEN_PER_AGENT:
                    written.popitem(last=False)
        return False

    def check(self, event: Event) -> MonitorResult:
        return self._match(event, remember=True)

    def check_isolated(self, event: Event) -> MonitorResult:
        return self._match(event, remember=False)


__all__ = [
    "OVER_SCAN_LIMIT",
    "SCAN_CHARS_PER_FIELD",
    "Policy",
    "Rule",
    "RulesMonitor",
    "compile_rule_pattern",
    "load_policy",
    "parse_policy",
    "scan_text",
]
