"""Shared helpers for benchmarks: timing, machine description, JSON output."""

from __future__ import annotations

import datetime
import json
import os
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent / "out"
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def shown_path(path: str | Path) -> str:
    """A path as results files record it: relative to the repository when inside it, so that no
    machine's absolute paths end up in committed results."""
    p = Path(path).resolve()
    root = Path(__file__).resolve().parents[1]
    return str(p.relative_to(root)) if p.is_relative_to(root) else str(path)


def subprocess_env() -> dict[str, str]:
    """The environment of a bench's child process: one OpenMP thread, and the ``slea`` this
    process imports first on ``PYTHONPATH`` (this checkout's ``python/`` in a development
    build, the installed package after ``pip install .``, whose checkout has no built
    extension); run it with ``cwd`` at the repository root for ``-m benches``."""
    import slea

    env = dict(os.environ, OMP_NUM_THREADS="1")
    here = str(Path(slea.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([here, env.get("PYTHONPATH", "")])
    return env


def machine() -> str:
    """One line describing this machine: cores, CPU model, Python."""
    model = platform.processor() or "unknown CPU"
    info: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    model = info.get("model name", model)
    if "cpu family" in info and "model" in info:
        model += f" (family {info['cpu family']}, model {info['model']})"
    return f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}"


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, e.g. ``"3.10 4.02 5.11"`` (how shared the machine is)."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - not on Linux
        return "unknown"


@dataclass(frozen=True)
class Best:
    """Best-of-``rounds`` time of one function, per call.

    Attributes:
        wall: wall-clock seconds per call in the best round.
        cpu: CPU seconds of the calling thread per call in the best round (``time.thread_time``),
            which the other processes of a shared machine inflate much less than wall time.
        rounds: rounds run (the same for every function of one :func:`interleaved` call).
        result: what the last call returned (for checks after timing).
    """

    wall: float
    cpu: float
    rounds: int
    result: Any = None


def interleaved(
    fns: Mapping[str, Callable[[], Any]], rounds: int, *, min_time: float = 0.0
) -> dict[str, Best]:
    """Time every function of ``fns`` for the same number of ``rounds``, interleaved.

    Round ``r`` calls the functions in the given order (in reverse order on odd rounds), so a
    change of load on a shared machine reaches every side alike; each function keeps its best
    round. Within a round a function is called until ``min_time`` seconds have passed (at least
    once) and the mean per call is taken, so fast and slow functions get the same number of
    rounds. Returns ``{name: Best}``.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    names = list(fns)
    wall = dict.fromkeys(names, float("inf"))
    cpu = dict.fromkeys(names, float("inf"))
    last: dict[str, Any] = {}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            fn, n = fns[name], 0
            w0, c0 = time.perf_counter(), time.thread_time()
            while True:
                last[name] = fn()
                n += 1
                dw = time.perf_counter() - w0
                if dw >= min_time:
                    break
            wall[name] = min(wall[name], dw / n)
            cpu[name] = min(cpu[name], (time.thread_time() - c0) / n)
    return {k: Best(wall[k], cpu[k], rounds, last[k]) for k in names}


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
    """Write ``payload`` (plus the machine line, the UTC date and the load average) to
    benches/out/<name>.json atomically. Copy the files that back a table of
    benches/RESULTS.md to benches/results/ (they are small) and name them there."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    stamp = {
        "machine": machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
        "load_average_at_end": load_average(),
    }
    tmp.write_text(json.dumps({**stamp, **payload}, indent=2, default=str))
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
