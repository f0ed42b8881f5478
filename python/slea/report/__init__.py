"""Run report: metrics and library -> HTML page with PNG figures (``slea report --run DIR``)."""

from __future__ import annotations

from typing import Any


def write_report(run_dir: Any) -> Any:
    """Build ``<run>/report/index.html``; see :func:`slea.report.html.write_report`."""
    from slea.report.html import write_report as _write

    return _write(run_dir)


__all__ = ["write_report"]
