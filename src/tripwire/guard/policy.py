"""``tripwire guard --policy FILE``: what the guard does with its detectors' verdicts.

A policy is a small JSON object (every key optional)::

    {"mode": "enforce",
     "notice": "This answer was withheld.",
     "on_error": "fail-closed",
     "detectors": {"ea": "flag",
                   "diff-kl": {"prefill": "block", "decode": "flag"}}}

* ``mode``: ``enforce`` (default) blocks and cuts; ``shadow`` scores and decides exactly as
  ``enforce`` would, reports that verdict (``x-tripwire-shadow-action``, ``shadow_action`` in
  the ``tripwire`` field) and blocks and cuts nothing: ``x-tripwire-action`` is ``allow``.
* ``detectors``: per detector (by its name), the most a crossing of its thresholds may do:
  ``block`` (default), ``flag`` (a block crossing only flags: a noisy detector demoted) or
  ``allow`` (scores reported, nothing decided); one action for both stages or
  ``{"prefill": ..., "decode": ...}``.
* ``notice``: the text that replaces a blocked answer (default
  ``[tripwire: this answer was blocked (<reasons>)]``; the reasons stay in the ``tripwire``
  field either way).
* ``on_error``: when a detector raises while scoring, ``fail-closed`` (default) blocks the
  prompt or cuts the answer with the error as the reason; ``fail-open`` serves it, flagged.

:func:`load_policy` reads and checks a file; every problem is one :class:`UsageError` line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from tripwire.errors import UsageError

Mode = Literal["enforce", "shadow"]
OnError = Literal["fail-closed", "fail-open"]
Cap = Literal["allow", "flag", "block"]
MODES: tuple[Mode, ...] = ("enforce", "shadow")
ON_ERROR: tuple[OnError, ...] = ("fail-closed", "fail-open")
CAPS: tuple[Cap, ...] = ("allow", "flag", "block")
STAGES = ("prefill", "decode")
_KEYS = ("mode", "notice", "on_error", "detectors")
MAX_NOTICE = 2000


@dataclass(frozen=True)
class Policy:
    """What the guard does with verdicts (see the module docstring); the default enforces."""

    mode: Mode = "enforce"
    notice: str | None = None
    on_error: OnError = "fail-closed"
    #: detector name -> stage -> the most a crossing may do
    caps: Mapping[str, Mapping[str, Cap]] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def enforce(self) -> bool:
        return self.mode == "enforce"

    def cap(self, detector: str, stage: str) -> Cap:
        """The most a crossing of ``detector``'s threshold may do at ``stage``."""
        return self.caps.get(detector, {}).get(stage, "block")

    def check_detectors(self, names: Sequence[str]) -> None:
        """Every detector the policy names is served (a typo would silently demote nothing)."""
        unknown = sorted(set(self.caps) - set(names))
        if unknown:
            served = ", ".join(names) or "none"
            raise UsageError(
                f"the policy names detector {unknown[0]!r}, which is not served "
                f"(--detector gives: {served})"
            )


def _choice(value: Any, allowed: Sequence[str], where: str) -> Any:
    if value not in allowed:
        raise UsageError(f"{where} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _caps(raw: Any, where: str) -> dict[str, Cap]:
    if isinstance(raw, str):
        cap = _choice(raw, CAPS, where)
        return {s: cap for s in STAGES}
    if not isinstance(raw, dict) or not raw:
        raise UsageError(
            f"{where} must be an action ({', '.join(CAPS)}) or "
            '{"prefill": ACTION, "decode": ACTION}'
        )
    extra = sorted(set(raw) - set(STAGES))
    if extra:
        raise UsageError(f"{where} has unknown stage {extra[0]!r}: use prefill or decode")
    return {s: _choice(raw.get(s, "block"), CAPS, f"{where}.{s}") for s in STAGES}


def parse_policy(raw: Any, where: str = "the policy") -> Policy:
    """A :class:`Policy` from a decoded JSON object; a :class:`UsageError` says what is wrong."""
    if not isinstance(raw, dict):
        raise UsageError(f"{where} must be a JSON object with keys {', '.join(_KEYS)}")
    extra = sorted(set(raw) - set(_KEYS))
    if extra:
        raise UsageError(f"{where} has unknown key {extra[0]!r}: use {', '.join(_KEYS)}")
    mode = _choice(raw.get("mode", "enforce"), MODES, f"{where}: mode")
    on_error = _choice(raw.get("on_error", "fail-closed"), ON_ERROR, f"{where}: on_error")
    notice = raw.get("notice")
    if notice is not None and (
        not isinstance(notice, str) or not notice.strip() or len(notice) > MAX_NOTICE
    ):
        raise UsageError(
            f"{where}: notice must be a non-empty string of at most {MAX_NOTICE} characters"
        )
    dets = raw.get("detectors", {})
    if not isinstance(dets, dict):
        raise UsageError(f"{where}: detectors must be an object {{NAME: ACTION, ...}}")
    caps = {
        str(name): MappingProxyType(_caps(v, f"{where}: detectors.{name}"))
        for name, v in dets.items()
    }
    return Policy(mode, notice, on_error, MappingProxyType(caps))


def load_policy(path: str | Path) -> Policy:
    """Read and check a policy file (JSON); every problem is one line naming the file."""
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"--policy {p} does not exist (a JSON file: see docs/guard.md)")
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        where = f"{exc.msg} at line {exc.lineno}"
        raise UsageError(f"--policy {p} is not valid JSON: {where}") from None
    except (UnicodeDecodeError, RecursionError):
        raise UsageError(f"--policy {p} is not a readable UTF-8 JSON file") from None
    return parse_policy(raw, f"--policy {p}")


__all__ = ["CAPS", "MODES", "ON_ERROR", "Policy", "load_policy", "parse_policy"]
