"""The morning report: what the self-learning layer saw and did, as one offline HTML file."""

from .data import store_summary
from .html import write_report

__all__ = ["store_summary", "write_report"]
