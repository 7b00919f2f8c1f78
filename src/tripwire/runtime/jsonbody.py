"""JSON parsing with a nesting limit checked before any recursive parser sees the text.

``json.loads`` (and everything that walks its result: pydantic, ``json.dumps``, SQLAlchemy)
recurses once per level, so ``[[[[...`` 100,000 deep in a 1 MiB body ends in ``RecursionError``.
:func:`loads` first measures the nesting with one linear, non-recursive scan (strings skipped
whole, runs of brackets counted at once) and refuses a document nested deeper than
``MAX_JSON_DEPTH`` levels, then parses it.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_JSON_DEPTH = 64

# A whole JSON string (possessive: never backtracks), a run of opening or closing brackets, or a
# quote that starts a string never closed. Everything else is skipped by the scanner in C.
_TOKEN = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"|[\[{]++|[\]}]++|"', re.S)


class JsonError(ValueError):
    """Text that is not JSON, or is nested deeper than the limit; the message is one line."""


def too_deep(text: str, max_depth: int = MAX_JSON_DEPTH) -> bool | None:
    """True when ``text`` nests brackets (outside strings) deeper than ``max_depth``; None when
    a string is never closed (so it is not JSON); False otherwise."""
    if text.count("[") + text.count("{") <= max_depth:
        return False  # cannot nest deeper; json.loads reports any other fault
    depth = 0
    for m in _TOKEN.finditer(text):
        tok = m.group()
        c = tok[0]
        if c == '"':
            if len(tok) == 1:
                return None
        elif c in "[{":
            depth += len(tok)
            if depth > max_depth:
                return True
        else:
            depth = max(0, depth - len(tok))
    return False


def loads(raw: bytes | str, max_depth: int = MAX_JSON_DEPTH, what: str = "body") -> Any:
    """Parse ``raw``; :class:`JsonError` names ``what`` when it is not JSON or too deep."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise JsonError(f"{what} is not valid JSON (not UTF-8)") from exc
    deep = too_deep(text, max_depth)
    if deep is None:
        raise JsonError(f"{what} is not valid JSON (a string is never closed)")
    if deep:
        raise JsonError(f"{what} is JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except ValueError as exc:
        raise JsonError(f"{what} is not valid JSON ({str(exc).splitlines()[0]})") from exc


__all__ = ["MAX_JSON_DEPTH", "JsonError", "loads", "too_deep"]
