"""What both databases can store, checked before a value reaches the writer; and JSON parsing with
bounded nesting.

SQLite stores almost anything; PostgreSQL refuses a NUL character in text, ``NaN``/``Infinity`` in
a JSON column, and text that is not valid Unicode. One set of rules, the stricter, holds on both, so
a request that SQLite would store is never refused later on PostgreSQL (at commit time, where it
used to fail every request committed with it):

- text (every string, JSON object keys included) has no NUL (``\\u0000``) and no lone surrogate;
- JSON numbers are finite (``NaN``, ``Infinity`` and ``1e999``, which parses to infinity, are not);
- JSON nests at most :data:`MAX_DEPTH` levels (the limit of pydantic's parser, so a body the
  routes accept is also one this module accepts).
"""

from __future__ import annotations

import math
from typing import Any

import pydantic_core

MAX_DEPTH = 200


class JsonError(ValueError):
    """Text that is not JSON, or nests deeper than :data:`MAX_DEPTH`; the message is one line."""


def loads(raw: bytes | str, allow_inf_nan: bool = False, what: str = "body") -> Any:
    """Parse JSON text (pydantic-core's parser: no Python recursion, so never a
    ``RecursionError``); :class:`JsonError` naming ``what`` (one line) when it is not JSON,
    nests deeper than :data:`MAX_DEPTH` or (unless allowed) writes ``NaN``/``Infinity``."""
    try:
        return pydantic_core.from_json(raw, allow_inf_nan=allow_inf_nan)
    except ValueError as exc:
        msg = str(exc).splitlines()[0] if str(exc) else "invalid JSON"
        if "recursion limit" in msg:
            raise JsonError(f"{what} is JSON nested deeper than {MAX_DEPTH} levels") from None
        raise JsonError(f"{what} is not valid JSON ({msg})") from None


def text_problem(s: str) -> str | None:
    """Why text ``s`` cannot be stored on every backend, or None."""
    if "\x00" in s:
        return "contains a NUL character (\\u0000), which PostgreSQL cannot store"
    if not s.isascii():
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate (not valid Unicode)"
    return None


def _step(path: str, key: object) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    k = str(key)[:40].encode("unicode_escape").decode("ascii")
    return f"{path}.{k}" if path else k


def value_problem(value: Any, name: str = "") -> str | None:
    """The first part of JSON value ``value`` that some backend cannot store, as one line that
    names it by its path under ``name`` (``"arguments.x[2] is nan: ..."``), or None."""
    stack: list[tuple[Any, str, int]] = [(value, name, 0)]
    while stack:
        v, path, depth = stack.pop()
        where = path or "the value"
        if isinstance(v, str):
            why = text_problem(v)
            if why:
                return f"{where} {why}"
        elif isinstance(v, float):
            if not math.isfinite(v):
                spelt = "NaN" if math.isnan(v) else ("-Infinity" if v < 0 else "Infinity")
                return (
                    f"{where} is {spelt}: JSON numbers must be finite (no NaN, Infinity or "
                    "number beyond ±1.8e308); send it as a string"
                )
        elif isinstance(v, dict | list | tuple):
            if depth >= MAX_DEPTH:
                return f"{name or 'the value'} nests deeper than {MAX_DEPTH} levels"
            items = v.items() if isinstance(v, dict) else enumerate(v)
            for k, x in items:
                if isinstance(k, str) and (why := text_problem(k)):
                    return f"the key {_step(path, k)} {why}"
                stack.append((x, _step(path, k), depth + 1))
    return None


__all__ = ["MAX_DEPTH", "JsonError", "loads", "text_problem", "value_problem"]
