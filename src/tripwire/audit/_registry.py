"""The section registry: what a report section is, and which ones ``tripwire audit`` runs.

A section is a class with ``name``, ``title``, ``order`` and ``run(ctx) -> SectionResult``,
registered with :func:`section`. ``tripwire audit`` runs the registered sections in ``order``.
Two optional class attributes shape when a section runs: ``default = False`` makes it opt-in
(it runs only when named in ``--sections``), and a static ``applies(ctx) -> bool`` skips it
where it does not apply (for example the adapter sections on a model without an adapter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from tripwire.errors import UsageError

if TYPE_CHECKING:
    from tripwire.audit._context import AuditContext


@dataclass
class SectionResult:
    """A section's JSON payload, its HTML fragment and a one-line summary.

    The payload is written to ``report.json`` as is, under ``results[<section name>]``.
    """

    data: dict[str, Any] | list[Any]
    html: str
    summary: str = ""


class Section(Protocol):
    """The shape :func:`section` checks: ``name`` (the ``--sections`` key and the report key),
    ``title`` (the heading), ``order`` (position in the report) and ``run``."""

    name: ClassVar[str]
    title: ClassVar[str]
    order: ClassVar[int]

    def run(self, ctx: AuditContext) -> SectionResult: ...


#: Every registered section by name (registration order); :func:`ordered_sections` sorts them.
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


def is_default(cls: type[Section]) -> bool:
    """Whether the section runs when ``--sections`` is not given."""
    return bool(getattr(cls, "default", True))


def applies(cls: type[Section], ctx: AuditContext) -> bool:
    """Whether the section applies to this audit (``applies(ctx)``; true when not declared)."""
    check = getattr(cls, "applies", None)
    return True if check is None else bool(check(ctx))


def ordered_sections(names: list[str] | None = None) -> list[type[Section]]:
    """Registered sections in order: ``names`` if given (unknown names are an error), else
    every section whose ``default`` attribute is not ``False``."""
    if names is not None:
        unknown = [n for n in names if n not in SECTIONS]
        if unknown:
            raise UsageError(
                f"unknown report section(s) {', '.join(unknown)}: "
                f"choose from {', '.join(section_names())}"
            )
    if names is None:
        chosen = [c for c in SECTIONS.values() if is_default(c)]
    else:
        chosen = [c for n, c in SECTIONS.items() if n in names]
    return sorted(chosen, key=lambda c: c.order)


def section_names() -> dict[str, str]:
    """Every registered section's name and title in report order, opt-in ones included
    (for ``tripwire audit --help`` and ``--sections``)."""
    return {c.name: c.title for c in sorted(SECTIONS.values(), key=lambda c: c.order)}


__all__ = [
    "SECTIONS",
    "Section",
    "SectionResult",
    "applies",
    "is_default",
    "ordered_sections",
    "section",
    "section_names",
]
