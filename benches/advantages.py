"""GiGPO / SLEA / SALT advantages: Rust vs the Python reference, NumPy and the verl-agent shape.

``python -m benches advantages [--sizes 1000,10000,100000] [--verl-max 20000] [--repeat 5]``

Batches look like agent rollouts: groups of 8 episodes of 5..50 steps, sparse success rewards,
10 % invalid actions, repeated states within a group. For each size the same batch goes to:

- slea (Rust): ``StepBatch(...)`` construction from numpy columns (validation, layout) plus
  ``compute_advantages`` (``gigpo``; ``salt`` as a second column),
- tests/reference/gigpo_ref.py: the plain-loop reference (given Python lists),
- benches/advantages_numpy.py: a vectorised NumPy version,
- benches/advantages_verl_shape.py: the shape of verl-agent's reference code (O(B^2) returns,
  per-row tensor ops, uuid step groups); sizes above ``--verl-max`` (default 20000: it is
  quadratic, about 3 minutes of CPU at 100k rows) are skipped.

Every reference's output is checked against slea's (max abs difference) before it is timed.
Ratios compare wall times measured in this run.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np

import slea
from benches.advantages_numpy import gigpo_numpy
from benches.advantages_verl_shape import gigpo_verl_shape
from benches.common import machine, table, write_json
from tests.reference.gigpo_ref import gigpo_ref

COLUMNS = [
    "rows",
    "slea gigpo (ms)",
    "slea salt (ms)",
    "Python ref (ms)",
    "NumPy (ms)",
    "verl shape (ms)",
    "x vs ref",
    "x vs NumPy",
    "x vs verl shape",
    "x vs verl shape (CPU time)",
    "slea ns/row",
    "slea CPU ns/row",
]


def make_columns(n_rows: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``n_rows`` step rows of rollout-like episodes, episode-major and in step order."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("group", "episode", "step", "key")}
    rewards, total, ep, g = [], 0, 0, 0
    while total < n_rows:
        n_states = int(rng.integers(8, 40))
        for _ in range(8):
            length = int(rng.integers(5, 51))
            parts["group"].append(np.full(length, g))
            parts["episode"].append(np.full(length, ep))
            parts["step"].append(np.arange(length))
            parts["key"].append(rng.integers(0, n_states, size=length) + (g << 20))
            r = np.zeros(length)
            r[-1] = float(rng.random() < 0.4)
            rewards.append(r)
            total, ep = total + length, ep + 1
        g += 1
    cols = {k: np.concatenate(v)[:n_rows] for k, v in parts.items()}
    cols["key"] = cols["key"].astype(np.uint64)
    cols["reward"] = np.concatenate(rewards)[:n_rows]
    cols["invalid"] = rng.random(n_rows) < 0.1
    cols["action_key"] = rng.integers(0, 6, size=n_rows).astype(np.uint64)
    return cols


def slea_call(cols: dict[str, np.ndarray], estimator: str) -> Callable[[], slea.Advantages]:
    def run() -> slea.Advantages:
        return slea.compute_advantages(slea.StepBatch(**cols), estimator)

    return run


def verl_inputs(cols: dict[str, np.ndarray]) -> dict[str, Any]:
    """verl-agent keeps ids as uuid strings in object arrays and rewards as float32."""
    groups = {g: str(uuid.uuid4()) for g in np.unique(cols["group"])}
    trajs = {e: str(uuid.uuid4()) for e in np.unique(cols["episode"])}
    return {
        "uid": np.array([groups[g] for g in cols["group"]], dtype=object),
        "traj_uid": np.array([trajs[e] for e in cols["episode"]], dtype=object),
        "reward": cols["reward"].astype(np.float32),
        "anchor": np.array([str(k) for k in cols["key"]], dtype=object),
        "invalid": cols["invalid"],
    }


def timed(fn: Callable[[], Any], repeat: int, min_time: float = 0.05) -> tuple[float, float]:
    """Best wall time and best thread CPU time (s) per call over ``repeat`` rounds (each round
    loops to ``min_time``). CPU time is reported too because the machine is shared: it is less
    inflated by other processes than wall time. The Rust kernel runs on the calling thread."""
    best_wall = best_cpu = float("inf")
    for _ in range(repeat):
        n, w0, c0 = 0, time.perf_counter(), time.thread_time()
        while True:
            fn()
            n += 1
            wall, cpu = time.perf_counter() - w0, time.thread_time() - c0
            if wall >= min_time:
                break
        best_wall, best_cpu = min(best_wall, wall / n), min(best_cpu, cpu / n)
    return best_wall, best_cpu


def max_diff(ours: slea.Advantages, other: Any) -> float:
    return float(np.max(np.abs(ours.advantage.astype(np.float64) - np.asarray(other, np.float64))))


def measure(n: int, verl_max: int, repeat: int) -> dict[str, Any]:
    """Time every implementation on one batch of ``n`` rows; check each against slea first."""
    cols = make_columns(n)
    names = ("group", "episode", "step", "reward", "key", "invalid")
    ours = slea_call(cols, "gigpo")()
    row: dict[str, Any] = {"rows": n}
    cpu: dict[str, float] = {}

    def record(label: str, fn: Callable[[], Any], rounds: int) -> None:
        wall, cpu[label] = timed(fn, rounds)
        row[f"{label} (ms)"] = wall * 1e3

    def once(label: str, fn: Callable[[], Any]) -> Any:
        w0, c0 = time.perf_counter(), time.thread_time()
        out = fn()
        row[f"{label} (ms)"] = (time.perf_counter() - w0) * 1e3
        cpu[label] = time.thread_time() - c0
        return out

    record("slea gigpo", slea_call(cols, "gigpo"), repeat)
    record("slea salt", slea_call(cols, "salt"), repeat)
    batch = slea.StepBatch(**cols)
    record("slea compute only", lambda: slea.compute_advantages(batch, "gigpo"), repeat)

    lists = [cols[k].tolist() for k in names]
    ref = once("Python ref", lambda: gigpo_ref(*lists, estimator="gigpo"))
    row["diff ref"] = max_diff(ours, ref["advantage"])

    arrays = [cols[k] for k in names]
    row["diff NumPy"] = max_diff(ours, gigpo_numpy(*arrays)[0])
    record("NumPy", lambda: gigpo_numpy(*arrays), max(1, repeat // 2))

    if n <= verl_max:
        inputs = verl_inputs(cols)
        verl_out = once("verl shape", lambda: gigpo_verl_shape(**inputs))
        row["diff verl shape"] = max_diff(ours, verl_out[:, 0].numpy())
        row["x vs verl shape"] = row["verl shape (ms)"] / row["slea gigpo (ms)"]
        row["x vs verl shape (CPU time)"] = cpu["verl shape"] / cpu["slea gigpo"]
    row["x vs ref"] = row["Python ref (ms)"] / row["slea gigpo (ms)"]
    row["x vs NumPy"] = row["NumPy (ms)"] / row["slea gigpo (ms)"]
    row["slea ns/row"] = row["slea gigpo (ms)"] * 1e6 / n
    row["slea CPU ns/row"] = cpu["slea gigpo"] * 1e9 / n
    row["cpu (ms)"] = {k: v * 1e3 for k, v in cpu.items()}
    return row


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches advantages", description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument(
        "--verl-max", type=int, default=20_000, help="largest size run through the verl shape"
    )
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    gigpo_verl_shape(**verl_inputs(make_columns(200)))  # import and warm up torch untimed
    rows = []
    for n in sizes:
        row = measure(n, args.verl_max, args.repeat)
        rows.append(row)
        diffs = {k: f"{v:.2g}" for k, v in row.items() if k.startswith("diff")}
        print(f"{n} rows done; max |advantage - slea| per reference: {diffs}", flush=True)
    growth = [
        rows[i + 1]["slea gigpo (ms)"] / rows[i]["slea gigpo (ms)"] for i in range(len(rows) - 1)
    ]
    print(f"\n{machine()}\n")
    print(table(rows, COLUMNS))
    print(f"\nslea time growth between consecutive sizes: {', '.join(f'{g:.1f}x' for g in growth)}")
    path = write_json("advantages", {"sizes": sizes, "rows": rows, "growth": growth})
    print(f"raw results: {path}")
    return 0
