#!/usr/bin/env python3
"""Compare two runs' per-iteration metrics, field by field, ignoring wall-clock timings.

Used to check that a refactor keeps behaviour: run the same config (with
``train.time_budget_s=0``, so the iteration count does not depend on the machine's speed) before
and after the change, on the same machine and seed, then::

    python scripts/compare_runs.py runs/before runs/after

Every record of ``metrics.jsonl`` (train and eval) and ``summary.json`` are compared exactly
(floats bit for bit), except the timing fields listed in ``IGNORED``. Prints the number of
records and fields compared and every difference (at most ``--show``); exits 1 on any difference.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

IGNORED = {
    "timing",
    "seconds",
    "elapsed_s",
    "eval_s",
    "steps_per_s",
    "train_time_s",
    "run_dir",
    "report",
}
"""Keys whose values are wall-clock timings or paths (compared nowhere in the tree)."""


def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if IGNORED & set(str(k).split("/")):  # flattened keys such as "seconds/admit"
                continue
            out.update(_leaves(v, f"{prefix}{k}/"))
        return out
    if isinstance(value, list):
        out = {}
        for i, v in enumerate(value):
            out.update(_leaves(v, f"{prefix}{i}/"))
        return out
    return {prefix.rstrip("/"): value}


def _records(run: Path) -> list[dict[str, Any]]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def compare(a: Path, b: Path, show: int = 20) -> int:
    """Print the differences between runs ``a`` and ``b``; return how many there are."""
    ra, rb = _records(a), _records(b)
    diffs: list[str] = []
    if len(ra) != len(rb):
        diffs.append(f"metrics.jsonl: {len(ra)} records vs {len(rb)}")
    fields = 0
    for n, (x, y) in enumerate(zip(ra, rb, strict=False)):
        lx, ly = _leaves(x), _leaves(y)
        where = f"record {n} ({x.get('kind')}, iteration {x.get('iteration')})"
        for key in sorted(set(lx) | set(ly)):
            fields += 1
            if key not in lx or key not in ly:
                diffs.append(f"{where}: {key} only in {'b' if key not in lx else 'a'}")
            elif lx[key] != ly[key]:
                diffs.append(f"{where}: {key}: {lx[key]!r} vs {ly[key]!r}")
    sa, sb = a / "summary.json", b / "summary.json"
    if sa.is_file() and sb.is_file():
        la, lb = _leaves(json.loads(sa.read_text())), _leaves(json.loads(sb.read_text()))
        for key in sorted(set(la) | set(lb)):
            fields += 1
            if la.get(key) != lb.get(key):
                diffs.append(f"summary.json: {key}: {la.get(key)!r} vs {lb.get(key)!r}")
    print(f"compared {min(len(ra), len(rb))} records, {fields} fields: {len(diffs)} differences")
    for d in diffs[:show]:
        print("  " + d)
    return len(diffs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="run directory (before)")
    parser.add_argument("b", type=Path, help="run directory (after)")
    parser.add_argument("--show", type=int, default=20, help="differences to print")
    args = parser.parse_args(argv)
    for run in (args.a, args.b):
        if not (run / "metrics.jsonl").is_file():
            print(f"error: {run} has no metrics.jsonl", file=sys.stderr)
            return 2
    return 1 if compare(args.a, args.b, args.show) else 0


if __name__ == "__main__":
    sys.exit(main())
