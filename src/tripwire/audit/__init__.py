"""``tripwire audit``: every report section run on one model, written as one HTML + JSON report.

The room holds the section registry (:func:`section`, :class:`Section`, :class:`SectionResult`,
:func:`ordered_sections`), the context sections read (:class:`AuditContext`, whose methods
compute shared artefacts such as the concept vectors once), the report writer
(:func:`run_audit`; :func:`audit_job` audits one model of several, see ``docs/scaling.md``) and
the built-in sections, one file each in ``tripwire.audit.sections``, registered when this
package is imported. ``report.json``'s layout is described in ``docs/audit.md``.
"""

from tripwire.audit import sections as _sections  # noqa: F401  (registers the built-ins)
from tripwire.audit._context import AuditArtefacts, AuditContext
from tripwire.audit._fleet import AuditJob, audit_job
from tripwire.audit._registry import (
    SECTIONS,
    Section,
    SectionResult,
    ordered_sections,
    section,
    section_names,
)
from tripwire.audit._report import run_audit

__all__ = [
    "SECTIONS",
    "AuditArtefacts",
    "AuditContext",
    "AuditJob",
    "Section",
    "SectionResult",
    "audit_job",
    "ordered_sections",
    "run_audit",
    "section",
    "section_names",
]
