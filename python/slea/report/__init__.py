"""Run report: metrics and library -> HTML page with PNG figures (``slea report --run DIR``)."""

from __future__ import annotations

from slea.report.html import write_report

__all__ = ["write_report"]
