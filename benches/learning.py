"""Learning curves: grpo vs gigpo vs slea (with and without library) vs training-free slea.

Every variant trains the CPU demo's tiny model (examples/configs/textworld_cpu.yaml) for the same
number of env steps, on the same generated games, for several seeds, and is evaluated on held-out
games (sampled and greedy) along the way. Two game sets: coin collector level 3 (``cc3``, the demo)
and treasure hunter level 3 (``th3``, where plain GRPO memorises its training games).

    python -m benches learning                        # everything (hours on 2 cores)
    python -m benches learning --sets cc3 --seeds 0 --env-steps 3000 --variants grpo slea
    python -m benches learning --report-only          # summarise the finished runs so far

A finished run (``summary.json`` and ``metrics.jsonl`` in its run directory) is reused, so an
interrupted bench picks up where it stopped, but only when its ``bench_key.json`` matches: the
sha256 of the run's resolved config (``slea.TrainConfig`` of the demo config with the run's
overrides, ``run.dir`` and ``run.overwrite`` left out) and the code version (git commit, plus a
hash of uncommitted changes under ``python/``, ``rust/`` and ``examples/``). A run whose key is
missing or differs is run again (``--report-only`` lists it as stale); ``--fresh`` re-runs all.

Variants (config overrides of the demo config):

=====================  ==========================================================================
``grpo``               episode-level group advantage, no library
``gigpo``              + step groups by exact observation anchor, no library
``slea``               + step groups by observation cluster, library retrieval and evolution
``slea_no_library``    slea's advantage without the library (retrieval and evolution off)
``slea_training_free`` weights frozen, only the library evolves (Training-Free GRPO style)
=====================  ==========================================================================

Runs are subprocesses (``slea train``), ``--jobs`` at a time, each with one torch thread. Output:
``benches/out/learning.json``, ``benches/out/learning_<set>.png`` and a Markdown table on stdout
(mean and standard deviation over seeds of the final held-out success).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benches.common import OUT_DIR, machine, table, write_json

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "examples" / "configs" / "textworld_cpu.yaml"

NO_LIBRARY = ["retrieval.enabled=false", "train.evolve_library=false"]
VARIANTS: dict[str, list[str]] = {
    "grpo": ["advantage.estimator=grpo", *NO_LIBRARY],
    "gigpo": ["advantage.estimator=gigpo", *NO_LIBRARY],
    "slea": ["advantage.estimator=slea"],
    "slea_no_library": ["advantage.estimator=slea", *NO_LIBRARY],
    "slea_training_free": ["train.update_policy=false"],
}
SETS: dict[str, list[str]] = {
    "cc3": ["env.games.kind=coin", "env.games.level=3", "env.games.train=48", "env.games.test=16"],
    "th3": [
        "env.games.kind=treasure",
        "env.games.level=3",
        "env.games.train=24",
        "env.games.test=16",
    ],
}


KEY_FILE = "bench_key.json"
"""Written into a run directory after the run finished: what it was run with (see
:func:`run_key`)."""


def code_version(root: Path = ROOT) -> str:
    """The git commit of ``root``, with ``+dirty.<sha256[:12]>`` of ``git diff HEAD`` under
    python/, rust/ and examples/ when those have uncommitted changes; ``unknown`` without git."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        diff = subprocess.run(
            ["git", "-C", str(root), "diff", "HEAD", "--", "python", "rust", "examples"],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    if diff:
        commit += "+dirty." + hashlib.sha256(diff).hexdigest()[:12]
    return commit


def run_key(overrides: list[str], code: str) -> dict[str, str]:
    """The key a finished run must match to be reused: ``{"config_sha256", "code"}``.

    ``config_sha256`` hashes the resolved config (every key, defaults included) of the demo
    config with ``overrides``, without ``run.dir`` and ``run.overwrite`` (where a run lives does
    not change what it computes); ``code`` is :func:`code_version`.
    """
    from slea.train.config import TrainConfig

    config = TrainConfig.from_yaml(BASE, overrides).to_dict()
    config["run"].pop("dir", None)
    config["run"].pop("overwrite", None)
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return {"config_sha256": hashlib.sha256(blob).hexdigest(), "code": code}


def reuse_status(run_dir: Path, key: dict[str, str]) -> str:
    """``"reuse"`` (finished, same key), ``"stale"`` (finished, key missing or different) or
    ``"missing"`` (not finished)."""
    finished = (run_dir / "summary.json").exists() and (run_dir / "metrics.jsonl").exists()
    if not finished:
        return "missing"
    try:
        stored = json.loads((run_dir / KEY_FILE).read_text())
    except (OSError, ValueError):
        return "stale"
    return "reuse" if stored == key else "stale"


def write_key(run_dir: Path, key: dict[str, str]) -> None:
    """Store ``key`` in ``run_dir`` atomically (temp file, fsync, rename)."""
    tmp = run_dir / (KEY_FILE + ".tmp")
    with open(tmp, "w") as f:
        json.dump(key, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, run_dir / KEY_FILE)


def overrides_for(
    game_set: str, variant: str, seed: int, run_dir: Path, args: argparse.Namespace
) -> list[str]:
    """The ``--set`` overrides of one run of the demo config."""
    overrides = [
        *SETS[game_set],
        *VARIANTS[variant],
        f"run.dir={run_dir}",
        "run.overwrite=true",
        f"train.seed={seed}",
        "train.iterations=100000",
        "train.threads=1",
        "train.time_budget_s=0",
        f"train.max_env_steps={args.env_steps}",
        f"eval.every={args.eval_every}",
        "checkpoint.every=100000",
        "logging.progress=false",
        "logging.tensorboard=false",
    ]
    if args.games_cache:
        overrides.append(f"env.games.cache_dir={args.games_cache}")
    return overrides


def _run(
    root: Path, game_set: str, variant: str, seed: int, args: argparse.Namespace
) -> dict[str, Any]:
    run_dir = root / game_set / variant / f"seed{seed}"
    overrides = overrides_for(game_set, variant, seed, run_dir, args)
    key = run_key(overrides, args.code_version)
    status = reuse_status(run_dir, key)
    if status == "reuse" and not args.fresh:
        return _result(run_dir, game_set, variant, seed, wall=None)
    if args.report_only:
        return {"set": game_set, "variant": variant, "seed": seed, "missing": True, "why": status}
    if status == "stale" and not args.fresh:
        print(f"[{game_set}/{variant}/seed{seed}] finished with another config or code: re-running")
    cmd = [
        "nice",
        "-n",
        str(args.nice),
        sys.executable,
        "-m",
        "slea",
        "train",
        "--config",
        str(BASE),
    ]
    for o in overrides:
        cmd += ["--set", o]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    t0 = time.time()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        print(f"[{game_set}/{variant}/seed{seed}] failed:\n{proc.stderr[-2000:]}", file=sys.stderr)
        return {"set": game_set, "variant": variant, "seed": seed, "failed": True, "wall_s": wall}
    write_key(run_dir, key)
    return _result(run_dir, game_set, variant, seed, wall=wall)


def _result(
    run_dir: Path, game_set: str, variant: str, seed: int, wall: float | None
) -> dict[str, Any]:
    """One finished run's figures, read back from its metrics (``wall`` None: reused)."""
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x]
    evals = [r for r in records if r.get("kind") == "eval"]
    train = [r for r in records if r.get("kind") == "train"]
    curve = [
        {
            "env_steps": r.get("env_steps", 0),
            "test_sampled": r.get("test_sampled", {}).get("success"),
            "test_greedy": r.get("test_greedy", {}).get("success"),
        }
        for r in evals
    ]
    last = evals[-1]
    how = "reused" if wall is None else f"done in {wall:.0f} s"
    print(
        f"[{game_set}/{variant}/seed{seed}] {how}: held-out sampled "
        f"{last['test_sampled']['success']:.2f}, greedy {last['test_greedy']['success']:.2f}",
        flush=True,
    )
    return {
        "set": game_set,
        "variant": variant,
        "seed": seed,
        "wall_s": wall,
        "reused": wall is None,
        "env_steps": train[-1]["env_steps"] if train else 0,
        "iterations": train[-1]["iteration"] if train else 0,
        "train_s": train[-1]["elapsed_s"] if train else 0.0,
        "test_sampled": last["test_sampled"]["success"],
        "test_greedy": last["test_greedy"]["success"],
        "train_sampled": last.get("train_sampled", {}).get("success"),
        "test_sampled_init": evals[0]["test_sampled"]["success"],
        "test_greedy_init": evals[0]["test_greedy"]["success"],
        "library_size": train[-1]["library"]["size"] if train else 0,
        "curve": curve,
    }


def _mean_std(xs: list[float]) -> tuple[float, float]:
    if not xs:
        return float("nan"), float("nan")
    m = sum(xs) / len(xs)
    var = sum((x - m) ** 2 for x in xs) / (len(xs) - 1) if len(xs) > 1 else 0.0
    return m, var**0.5


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std over seeds per (set, variant)."""
    rows = []
    keys = sorted(
        {(r["set"], r["variant"]) for r in results if not r.get("failed")},
        key=lambda k: (k[0], list(VARIANTS).index(k[1])),
    )
    for game_set, variant in keys:
        rs = [
            r
            for r in results
            if r["set"] == game_set and r["variant"] == variant and not r.get("failed")
        ]
        row: dict[str, Any] = {"set": game_set, "variant": variant, "seeds": len(rs)}
        for key in ("test_sampled", "test_greedy", "train_sampled"):
            m, s = _mean_std([float(r[key]) for r in rs if r.get(key) is not None])
            row[key] = f"{m:.2f} ± {s:.2f}"
        m0, _ = _mean_std([float(r["test_sampled_init"]) for r in rs])
        row["test_sampled_init"] = f"{m0:.2f}"
        row["env_steps"] = int(sum(r["env_steps"] for r in rs) / len(rs))
        row["train_min"] = f"{sum(r['train_s'] for r in rs) / len(rs) / 60:.1f}"
        rows.append(row)
    return rows


def plot(results: list[dict[str, Any]], game_set: str) -> Path | None:
    """Held-out sampled success vs env steps, mean over seeds, one line per variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rs = [r for r in results if r["set"] == game_set and not r.get("failed")]
    if not rs:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), dpi=100)
    for ax, key in zip(axes, ("test_sampled", "test_greedy"), strict=True):
        for variant in VARIANTS:
            runs = [r["curve"] for r in rs if r["variant"] == variant]
            if not runs:
                continue
            n = min(len(c) for c in runs)
            xs = [sum(c[i]["env_steps"] for c in runs) / len(runs) for i in range(n)]
            ys = [sum(float(c[i][key] or 0.0) for c in runs) / len(runs) for i in range(n)]
            ax.plot(xs, ys, "o-", label=variant, markersize=3)
        ax.set_title(f"{game_set}: held-out success ({key.split('_')[1]})")
        ax.set_xlabel("env steps")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"learning_{game_set}.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benches learning", description=__doc__.splitlines()[0]
    )
    p.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--env-steps", type=int, default=6000, help="env-step budget of every run")
    p.add_argument("--eval-every", type=int, default=10, help="iterations between evaluations")
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel")
    p.add_argument("--nice", type=int, default=10)
    p.add_argument("--games-cache", default="", help="where generated games are cached")
    p.add_argument("--root", default=str(ROOT / "runs" / "learning"), help="run directories")
    p.add_argument(
        "--fresh", action="store_true", help="re-run finished runs instead of reusing them"
    )
    p.add_argument(
        "--report-only",
        action="store_true",
        help="start no run: summarise the finished runs under --root whose key matches "
        "(missing and stale ones are listed)",
    )
    args = p.parse_args(argv)
    args.code_version = code_version()
    root = Path(args.root)
    jobs = [(s, v, seed) for s in args.sets for seed in args.seeds for v in args.variants]
    t0 = time.time()
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(lambda j: _run(root, *j, args), jobs))
    missing = [r for r in results if r.get("missing")]
    results = [r for r in results if not r.get("missing")]
    for r in missing:
        why = "finished with another config or code" if r.get("why") == "stale" else "not run yet"
        print(f"[{r['set']}/{r['variant']}/seed{r['seed']}] {why}", flush=True)
    rows = summarise(results)
    figures = [str(f) for f in (plot(results, s) for s in args.sets) if f]
    columns = [
        "set",
        "variant",
        "seeds",
        "env_steps",
        "test_sampled_init",
        "test_sampled",
        "test_greedy",
        "train_sampled",
        "train_min",
    ]
    md = table(rows, columns)
    path = write_json(
        "learning",
        {
            "args": vars(args),
            "results": results,
            "summary": rows,
            "figures": figures,
            "missing": missing,
            "wall_s": time.time() - t0,
        },
    )
    print(f"\n{machine()}\n")
    print(md)
    print(f"\nraw: {path}; figures: {', '.join(figures)}")
    return 0 if all(not r.get("failed") for r in results) and not missing else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
