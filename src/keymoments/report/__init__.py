"""The self-contained HTML report (no external assets; every value escaped)."""

from .html import write_report

__all__ = ["write_report"]
