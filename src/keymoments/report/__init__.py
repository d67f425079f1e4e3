"""The self-contained HTML report (no external assets; every value escaped)."""

from .html import write_report
from .sections import report_sections

__all__ = ["report_sections", "write_report"]
