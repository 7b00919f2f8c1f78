"""Pluggable report sections.

A section is a class with ``name``, ``title`` and ``run(ctx) -> SectionResult``, registered with
:func:`section`. ``tripwire audit`` runs the registered sections in ``order``; later rooms (model
organisms, behaviour, runtime) add theirs by writing one file that uses the decorator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from tripwire.errors import UsageError


@dataclass
class AuditContext:
    """What every section sees: the model, options, and values earlier sections shared."""

    lm: Any  # tripwire.models.LocalModel (Any keeps report/ free of torch at import time)
    seed: int = 0
    limit: int | None = None
    shared: dict[str, Any] = field(default_factory=dict)
    progress: Callable[[str], None] = lambda message: None


@dataclass
class SectionResult:
    """A section's JSON payload, its HTML fragment and a one-line summary."""

    data: dict[str, Any]
    html: str
    summary: str = ""


class Section(Protocol):
    name: ClassVar[str]
    title: ClassVar[str]
    order: ClassVar[int]
    #: Sections with ``default = False`` run only when named in ``--sections``.

    def run(self, ctx: AuditContext) -> SectionResult: ...


SECTIONS: dict[str, type[Section]] = {}


def section(cls: type[Any]) -> type[Any]:
    """Class decorator registering a report section under ``cls.name``."""
    for attr in ("name", "title", "order", "run"):
        if not hasattr(cls, attr):
            raise TypeError(f"report section {cls.__name__} lacks {attr!r}")
    if cls.name in SECTIONS and SECTIONS[cls.name] is not cls:
        raise TypeError(f"report section name {cls.name!r} is already registered")
    SECTIONS[cls.name] = cls
    return cls


def ordered_sections(names: list[str] | None = None) -> list[type[Section]]:
    """Registered sections in order: ``names`` if given (unknown names are an error), else
    every section whose ``default`` attribute is not ``False``."""
    if names is not None:
        unknown = [n for n in names if n not in SECTIONS]
        if unknown:
            raise UsageError(
                f"unknown report section(s) {', '.join(unknown)}: choose from {', '.join(SECTIONS)}"
            )
    chosen = [
        c
        for n, c in SECTIONS.items()
        if (n in names if names is not None else getattr(c, "default", True))
    ]
    return sorted(chosen, key=lambda c: c.order)


__all__ = ["SECTIONS", "AuditContext", "Section", "SectionResult", "ordered_sections", "section"]
