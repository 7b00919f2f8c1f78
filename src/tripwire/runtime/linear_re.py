"""Regular expressions that run in time linear in the text: Google's RE2 (``google-re2``).

Python's ``re`` backtracks, so a pattern such as ``a[^\\n]*(b|c)`` costs time quadratic in a text
that never completes it (a 64 KB event of ``>`` took minutes). Every pattern the runtime matches
against content an agent or a model wrote (policy rules, the LLM monitors' sanitiser) is compiled
here instead. RE2 has no backreferences, lookaround or ``\\Z`` (use ``\\z``), and its ``\\w``,
``\\d``, ``\\s`` and ``\\b`` are ASCII; a pattern that needs more is refused, never handed to
``re``. ``MAX_PROGRAM_BYTES`` bounds the memory of one compiled pattern: a larger one is refused
too.
"""

from __future__ import annotations

from typing import Protocol

import re2

MAX_PROGRAM_BYTES = 8 << 20


class Regex(Protocol):
    """The part of a compiled pattern the runtime uses (both ``re2`` and ``re`` objects have it)."""

    @property
    def pattern(self) -> str: ...

    def search(self, text: str) -> object | None: ...

    def sub(self, repl: str, text: str) -> str: ...


class PatternError(ValueError):
    """A pattern RE2 cannot compile; the message is one line."""


def compile_linear(pattern: str, *, ignore_case: bool = False, capture: bool = True) -> Regex:
    """``pattern`` compiled by RE2, or :class:`PatternError` saying why it cannot be."""
    opts = re2.Options()
    opts.log_errors = False
    opts.case_sensitive = not ignore_case
    opts.never_capture = not capture
    opts.max_mem = MAX_PROGRAM_BYTES
    try:
        compiled: Regex = re2.compile(pattern, opts)
    except re2.error as exc:
        raw = exc.args[0] if exc.args else "invalid pattern"
        why = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        raise PatternError(" ".join(why.split()) or "invalid pattern") from exc
    return compiled


def escape(text: str) -> str:
    """``text`` as an RE2 pattern matching it literally."""
    return str(re2.escape(text))


def is_linear(compiled: object) -> bool:
    """Whether ``compiled`` is an RE2 object (the structural property the tests assert)."""
    return type(compiled).__module__.split(".")[0] == "re2"


__all__ = ["MAX_PROGRAM_BYTES", "PatternError", "Regex", "compile_linear", "escape", "is_linear"]
