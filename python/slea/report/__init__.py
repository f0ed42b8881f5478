"""Run report: metrics and library -> HTML page with PNG figures."""
