"""The operator's report: one self-contained HTML page for a plan or a run (pure)."""

from connector.records import RunNotFoundError
from connector.report.html import render_html
from connector.report.model import (
    Areas,
    Outcome,
    Report,
    areas_of,
    report_from_audit,
    scope_to_wda,
)

__all__ = [
    "Areas",
    "Outcome",
    "Report",
    "RunNotFoundError",
    "areas_of",
    "render_html",
    "report_from_audit",
    "scope_to_wda",
]
