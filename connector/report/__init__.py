"""The operator's report: one self-contained HTML page for a plan or a run (pure)."""

from connector.report.html import render_html
from connector.report.model import (
    Areas,
    Outcome,
    Report,
    RunNotFoundError,
    areas_of,
    plan_audit_extras,
    report_from_audit,
    scope_to_wda,
)

__all__ = [
    "Areas",
    "Outcome",
    "Report",
    "RunNotFoundError",
    "areas_of",
    "plan_audit_extras",
    "render_html",
    "report_from_audit",
    "scope_to_wda",
]
