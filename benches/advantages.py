"""GiGPO / SLEA / SALT advantages: Rust vs the Python reference, NumPy and verl-agent's code.

``python -m benches advantages [--sizes 1000,10000,100000] [--verl-max 20000] [--repeat 5]
[--upstream DIR]``

Batches look like agent rollouts: groups of 8 episodes of 5..50 steps, sparse success rewards,
10 % invalid actions, repeated states within a group. For each size the same batch goes to:

- slea (Rust): ``StepBatch(...)`` construction from numpy columns (validation, layout) plus
  ``compute_advantages`` (``gigpo``; ``salt`` as a second column, not compared),
- tests/reference/gigpo_ref.py: the plain-loop reference (given Python lists),
- benches/advantages_numpy.py: a vectorised NumPy version,
- benches/advantages_verl_shape.py: *our restatement* of the shape of verl-agent's GiGPO code
  (O(B^2) returns, per-row tensor ops, uuid step groups), written by us,
- with ``--upstream DIR``: verl-agent's own ``gigpo/core_gigpo.py`` loaded from the user's
  checkout at DIR (``compute_step_discounted_returns``, the invalid-action penalty as its trainer
  applies it, ``compute_gigpo_outcome_advantage``; see benches/upstream.py). Nothing is copied.

The last two are quadratic; sizes above ``--verl-max`` (default 20000) skip them.

Every implementation computes the same advantages: each is checked against slea before timing
and the bench fails when the largest absolute difference exceeds ``TOLERANCE`` (1e-5; the
float32 implementations differ from slea by rounding only, about 1e-7). Every side is then timed
for the same ``--repeat`` rounds, the sides interleaved (``benches.common.interleaved``; a round
repeats a call for at least 50 ms and takes the mean), best round kept. Ratios use thread CPU
time (wall time is in the JSON), which the other processes of a shared machine inflate less.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import uuid
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np

import slea
from benches.advantages_numpy import gigpo_numpy
from benches.advantages_verl_shape import gigpo_verl_shape
from benches.common import interleaved, load_average, machine, table, write_json
from tests.reference.gigpo_ref import gigpo_ref

TOLERANCE = 1e-5
"""Largest absolute difference from slea's advantages any implementation may show."""

VERL_RESTATEMENT = "our verl-agent restatement"
VERL_UPSTREAM = "verl-agent core_gigpo.py"

COLUMNS = [
    "rows",
    "slea gigpo (CPU ms)",
    "slea salt (CPU ms)",
    "Python ref (CPU ms)",
    "NumPy (CPU ms)",
    f"{VERL_RESTATEMENT} (CPU ms)",
    f"{VERL_UPSTREAM} (CPU ms)",
    "x vs Python ref",
    "x vs NumPy",
    f"x vs {VERL_RESTATEMENT}",
    f"x vs {VERL_UPSTREAM}",
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


def max_diff(ours: slea.Advantages, other: Any) -> float:
    return float(np.max(np.abs(ours.advantage.astype(np.float64) - np.asarray(other, np.float64))))


def upstream_call(core_gigpo: Any, inputs: dict[str, Any]) -> Callable[[], Any]:
    """verl-agent's GiGPO on ``inputs`` (:func:`verl_inputs`), as its trainer calls it: step
    returns from the batch, the invalid-action penalty on the last response token's reward and
    on the step rewards, then the advantages (``mode="mean_norm"``, weight 1). Returns the
    ``(B, response_length)`` advantages; the module's progress prints are swallowed."""
    import torch

    n, length, penalty = len(inputs["uid"]), 4, 0.1
    batch = SimpleNamespace(
        non_tensor_batch={
            "rewards": inputs["reward"],
            "traj_uid": inputs["traj_uid"],
            "active_masks": np.ones(n, dtype=bool),
        },
        batch={"input_ids": torch.zeros(1)},
    )
    totals: dict[str, float] = {}
    for t, r in zip(inputs["traj_uid"], inputs["reward"], strict=True):
        totals[t] = totals.get(t, 0.0) + float(r)
    episode_reward = torch.tensor([totals[t] for t in inputs["traj_uid"]], dtype=torch.float32)
    invalid = torch.tensor(inputs["invalid"].astype(np.float32))

    def run() -> Any:
        with contextlib.redirect_stdout(io.StringIO()):
            step_rewards = core_gigpo.compute_step_discounted_returns(batch, 0.95)
            token_rewards = torch.zeros(n, length)
            token_rewards[:, -1] = episode_reward - penalty * invalid
            step_rewards = step_rewards - penalty * invalid
            scores, _ = core_gigpo.compute_gigpo_outcome_advantage(
                token_level_rewards=token_rewards,
                step_rewards=step_rewards,
                response_mask=torch.ones(n, length),
                anchor_obs=inputs["anchor"],
                index=inputs["uid"],
                traj_index=inputs["traj_uid"],
                step_advantage_w=1.0,
                mode="mean_norm",
            )
        return scores

    return run


def check(name: str, ours: slea.Advantages, other: Any) -> float:
    """Largest |advantage - slea's| of ``other``; raises when it exceeds :data:`TOLERANCE`."""
    diff = max_diff(ours, other)
    if not diff <= TOLERANCE:
        raise AssertionError(
            f"{name} differs from slea's advantages by up to {diff:.3g} (tolerance {TOLERANCE})"
        )
    return diff


def measure(n: int, verl_max: int, repeat: int, core_gigpo: Any = None) -> dict[str, Any]:
    """Check every implementation against slea on one batch of ``n`` rows, then time them all
    for ``repeat`` interleaved rounds."""
    cols = make_columns(n)
    names = ("group", "episode", "step", "reward", "key", "invalid")
    ours = slea_call(cols, "gigpo")()
    batch = slea.StepBatch(**cols)
    lists = [cols[k].tolist() for k in names]
    arrays = [cols[k] for k in names]
    fns: dict[str, Callable[[], Any]] = {
        "slea gigpo": slea_call(cols, "gigpo"),
        "slea salt": slea_call(cols, "salt"),
        "slea compute only": lambda: slea.compute_advantages(batch, "gigpo"),
        "Python ref": lambda: gigpo_ref(*lists, estimator="gigpo"),
        "NumPy": lambda: gigpo_numpy(*arrays),
    }
    row: dict[str, Any] = {"rows": n, "rounds": repeat, "tolerance": TOLERANCE}
    row["diff Python ref"] = check("Python ref", ours, fns["Python ref"]()["advantage"])
    row["diff NumPy"] = check("NumPy", ours, fns["NumPy"]()[0])
    if n <= verl_max:
        inputs = verl_inputs(cols)
        fns[VERL_RESTATEMENT] = lambda: gigpo_verl_shape(**inputs)
        out = fns[VERL_RESTATEMENT]()
        row[f"diff {VERL_RESTATEMENT}"] = check(VERL_RESTATEMENT, ours, out[:, 0].numpy())
        if core_gigpo is not None:
            fns[VERL_UPSTREAM] = upstream_call(core_gigpo, inputs)
            out = fns[VERL_UPSTREAM]()
            row[f"diff {VERL_UPSTREAM}"] = check(VERL_UPSTREAM, ours, out[:, 0].numpy())
    t = interleaved(fns, repeat, min_time=0.05)
    for name, best in t.items():
        row[f"{name} (CPU ms)"] = best.cpu * 1e3
        row[f"{name} (wall ms)"] = best.wall * 1e3
        if not name.startswith("slea"):
            row[f"x vs {name}"] = best.cpu / t["slea gigpo"].cpu
            row[f"x vs {name} (wall)"] = best.wall / t["slea gigpo"].wall
    row["slea CPU ns/row"] = t["slea gigpo"].cpu * 1e9 / n
    row["slea compute-only CPU ns/row"] = t["slea compute only"].cpu * 1e9 / n
    return row


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches advantages", description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument(
        "--verl-max",
        type=int,
        default=20_000,
        help="largest size run through the (quadratic) verl-agent restatement and upstream code",
    )
    parser.add_argument("--repeat", type=int, default=5, help="rounds of every side (best kept)")
    parser.add_argument(
        "--upstream",
        metavar="DIR",
        help="a checkout of verl-agent or slea-rl: also time its gigpo/core_gigpo.py",
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    core_gigpo = None
    if args.upstream:
        from benches.upstream import core_gigpo as load_core_gigpo

        core_gigpo = load_core_gigpo(args.upstream)
    warm = verl_inputs(make_columns(200))
    gigpo_verl_shape(**warm)  # import and warm up torch untimed
    if core_gigpo is not None:
        upstream_call(core_gigpo, warm)()
    load_start = load_average()
    print(f"{machine()}; load average {load_start}", flush=True)
    rows = []
    for n in sizes:
        row = measure(n, args.verl_max, args.repeat, core_gigpo)
        rows.append(row)
        diffs = {k: f"{v:.2g}" for k, v in row.items() if k.startswith("diff")}
        print(f"{n} rows done; max |advantage - slea| per implementation: {diffs}", flush=True)
    growth = [
        rows[i + 1]["slea gigpo (CPU ms)"] / rows[i]["slea gigpo (CPU ms)"]
        for i in range(len(rows) - 1)
    ]
    print(f"\n{machine()}; load average at the end {load_average()}\n")
    print(table(rows, [c for c in COLUMNS if any(c in r for r in rows)]))
    print(f"\nslea time growth between consecutive sizes: {', '.join(f'{g:.1f}x' for g in growth)}")
    path = write_json(
        "advantages",
        {
            "command": "python -m benches advantages " + " ".join(argv),
            "upstream": args.upstream,
            "sizes": sizes,
            "rows": rows,
            "growth": growth,
            "load_average_at_start": load_start,
        },
    )
    print(f"raw results: {path}")
    return 0
