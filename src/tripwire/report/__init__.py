"""The risk report: pluggable sections rendered to one HTML page and one JSON file."""

from tripwire.report.sections import (
    SECTIONS,
    AuditContext,
    Section,
    SectionResult,
    ordered_sections,
    section,
)

__all__ = ["SECTIONS", "AuditContext", "Section", "SectionResult", "ordered_sections", "section"]
