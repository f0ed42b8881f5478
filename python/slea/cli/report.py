"""``slea report --run DIR``: write the HTML report of a run (``DIR/report/index.html``)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``slea report``."""
    parser.add_argument("--run", required=True, metavar="DIR", help="run directory")


def run(args: argparse.Namespace) -> int:
    """Build the report and print its path."""
    from slea.report.html import write_report

    path = write_report(args.run)
    print(f"report: {path}")
    return 0
