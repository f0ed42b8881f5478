"""Shared helpers for benchmarks: timing, machine description, JSON output."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent / "out"


def machine() -> str:
    """One line describing this machine: cores, CPU model, Python."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}"


def best_of(fn: Callable[[], Any], repeat: int = 5, min_time: float = 0.05) -> float:
    """Best wall time in seconds of ``fn()`` over ``repeat`` rounds (each round loops to ``min_time``)."""
    best = float("inf")
    for _ in range(repeat):
        n = 0
        t0 = time.perf_counter()
        while True:
            fn()
            n += 1
            dt = time.perf_counter() - t0
            if dt >= min_time:
                break
        best = min(best, dt / n)
    return best


def write_json(name: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus the machine line) to benches/out/<name>.json atomically."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"machine": machine(), **payload}, indent=2))
    os.replace(tmp, path)
    return path


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Render rows as a Markdown table with the given columns."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(fmt(r.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)
