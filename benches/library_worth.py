"""What the experience library is worth with frozen weights (the training-free setting).

``python -m benches library_worth [--config FILE] [--set KEY=VALUE ...] --name LABEL
[--seeds 0 1 2] [--distillers rule llm] [--iterations N] [--split valid|test]
[--episodes-per-task N] [--jobs N]``

For each seed and distiller a worker process builds a :class:`slea.Trainer` on the config with
``train.update_policy=false`` (nothing is trained) and retrieval from the first iteration
(``retrieval.warmup=0``, ``retrieval.min_library=0``), plays ``--iterations`` training
iterations (rollouts with retrieval, then library evolution with that distiller), and then plays
every game of the held-out split through the trainer's own evaluation path, with the same sampling
seed, in three arms:

- ``none``: an empty library (the zero-shot policy; played once per seed, by the first distiller);
- ``step``: the evolved library, retrieved at every step from the step's observation cluster;
- ``task``: the same library, retrieved once per episode from its first observation
  (``retrieval.level=task``, the paper's task-level ablation).

Prints mean ± sd over seeds of every arm and of the paired difference ``step - none``, writes
``benches/out/library_worth_<name>_<split>.json`` (per seed: the arms, the library's size and a
sample of its entries, the training rollouts' success, wall times). Choose on ``valid``; play
``test`` once per final recipe. The default config is ``examples/configs/textworld_smollm2.yaml``
(``slea models fetch smollm2-135m-instruct`` once).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benches.common import OUT_DIR, machine, shown_path, subprocess_env, write_json

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "examples" / "configs" / "textworld_smollm2.yaml"
ARMS = ("none", "step", "task")


def worker(
    config: Path,
    overrides: list[str],
    *,
    seed: int,
    distiller: str,
    iterations: int,
    split: str,
    episodes_per_task: int,
    arms: tuple[str, ...] = ARMS,
) -> dict[str, Any]:
    """One seed and distiller: evolve the library on training games, then the held-out arms."""
    import torch

    import slea
    from slea.train.config import TrainConfig

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="slea-library-worth-") as tmp:
        sets = [
            *overrides,
            f"run.dir={tmp}/run",
            f"train.seed={seed}",
            f"train.iterations={iterations}",
            "train.update_policy=false",
            "train.evolve_library=true",
            "train.time_budget_s=0",
            f"evolution.distiller={distiller}",
            "retrieval.enabled=true",
            "retrieval.warmup=0",
            "retrieval.min_library=0",
            "retrieval.level=step",
            "logging.progress=false",
        ]
        cfg = TrainConfig.from_yaml(config, sets)
        trainer = slea.Trainer(cfg)
        out: dict[str, Any] = {"seed": seed, "distiller": distiller, "policy": repr(trainer.policy)}
        try:
            t0 = time.perf_counter()
            train = []
            for _ in range(iterations):
                rec = trainer.train_iteration()
                train.append(
                    {
                        "iteration": rec["iteration"],
                        "success": rec["rollout"]["success"],
                        "library": rec["library"]["size"],
                        "retrieval_active": rec.get("retrieval_active"),
                        "evolution": {
                            k: v
                            for k, v in rec.get("evolution", {}).items()
                            if isinstance(v, int | float)
                        },
                    }
                )
                print(
                    f"[seed {seed} {distiller}] iteration {rec['iteration']}: training success "
                    f"{rec['rollout']['success']:.2f}, library {rec['library']['size']}",
                    flush=True,
                )
            out["evolve_s"] = round(time.perf_counter() - t0, 1)
            out["train"] = train
            out["env_steps"] = trainer.env_steps
            out["library_size"] = len(trainer.library)
            out["library_sample"] = [
                {"zone": e.zone, "level": e.level, "score": round(e.score, 3), "text": e.text}
                for e in trainer.library.entries()[:12]
            ]
            for arm in arms:
                t0 = time.perf_counter()
                res = trainer.evaluate(
                    split,
                    episodes_per_task=episodes_per_task,
                    max_tasks=cfg.eval.max_tasks,
                    retrieval=arm,
                )
                keep = ("success", "episodes", "episode_length", "retrieval_fraction", "steps")
                out[arm] = {k: res[k] for k in keep if k in res}
                out[arm]["seconds"] = round(time.perf_counter() - t0, 1)
                print(
                    f"[seed {seed} {distiller}] {arm}: success {res['success']:.3f} over "
                    f"{res['episodes']} episodes, retrieval {res['retrieval_fraction']:.2f}",
                    flush=True,
                )
        finally:
            trainer.close()
    return out


def _stats(values: list[float]) -> dict[str, Any]:
    return {
        "mean": round(statistics.fmean(values), 4),
        "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
        "values": [round(v, 4) for v in values],
    }


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± sd over seeds of every (distiller, arm), and of the paired differences to ``none``
    (the same seed's empty-library arm)."""
    none = {r["seed"]: r["none"]["success"] for r in rows if "none" in r}
    out: dict[str, Any] = {}
    if none:
        out["none"] = _stats([none[s] for s in sorted(none)])
    for distiller in sorted({r["distiller"] for r in rows}):
        mine = sorted((r for r in rows if r["distiller"] == distiller), key=lambda r: r["seed"])
        for arm in ("step", "task"):
            if any(arm not in r for r in mine):
                continue
            key = f"{distiller}_{arm}"
            out[key] = _stats([r[arm]["success"] for r in mine])
            paired = [r[arm]["success"] - none[r["seed"]] for r in mine if r["seed"] in none]
            if paired:
                out[f"{key}_minus_none"] = _stats(paired)
        out[f"{distiller}_library_size"] = _stats([float(r["library_size"]) for r in mine])
    return out


def _job(args: argparse.Namespace, seed: int, distiller: str, arms: list[str]) -> dict[str, Any]:
    part = OUT_DIR / f"library_worth_{args.name}_{args.split}_s{seed}_{distiller}.json"
    if part.is_file() and not args.again:
        print(f"[seed {seed} {distiller}] finished earlier: {shown_path(part)} reused", flush=True)
        return dict(json.loads(part.read_text()))
    cmd = [sys.executable, "-m", "benches", "library_worth", "--worker", str(seed), distiller]
    cmd += ["--config", str(args.config), "--split", args.split, "--name", args.name]
    cmd += [
        "--iterations",
        str(args.iterations),
        "--episodes-per-task",
        str(args.episodes_per_task),
    ]
    cmd += ["--arms", *arms]
    for o in args.overrides:
        cmd += ["--set", o]
    # the worker's progress lines reach the terminal as they come; its stderr is kept for errors
    proc = subprocess.run(cmd, env=subprocess_env(), cwd=ROOT, text=True, stderr=subprocess.PIPE)
    if proc.returncode != 0:
        raise RuntimeError(f"seed {seed} {distiller} failed:\n{proc.stderr[-3000:]}")
    return dict(json.loads(part.read_text()))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benches library_worth", description=__doc__)
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--name", required=True, help="label of the output files")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--distillers", nargs="+", default=["rule"], choices=["rule", "llm"])
    ap.add_argument("--iterations", type=int, default=3, help="evolution iterations")
    ap.add_argument("--split", default="valid", choices=["valid", "test"])
    ap.add_argument("--episodes-per-task", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=2, help="worker processes at once")
    ap.add_argument("--again", action="store_true", help="rerun finished workers")
    ap.add_argument("--worker", nargs=2, metavar=("SEED", "DISTILLER"), help=argparse.SUPPRESS)
    ap.add_argument(
        "--arms",
        nargs="+",
        default=list(ARMS),
        choices=ARMS,
        help="held-out arms (none is played by the first distiller only)",
    )
    args = ap.parse_args(argv)
    if args.iterations < 1 or args.episodes_per_task < 1 or args.jobs < 1:
        ap.error("--iterations, --episodes-per-task and --jobs must be >= 1")
    if args.worker:
        seed, distiller = int(args.worker[0]), args.worker[1]
        res = worker(
            args.config,
            args.overrides,
            seed=seed,
            distiller=distiller,
            iterations=args.iterations,
            split=args.split,
            episodes_per_task=args.episodes_per_task,
            arms=tuple(args.arms),
        )
        write_json(f"library_worth_{args.name}_{args.split}_s{seed}_{distiller}", res)
        return 0
    print(f"# {machine()}", flush=True)
    jobs = [
        (seed, d, [a for a in args.arms if a != "none" or d == args.distillers[0]])
        for d in args.distillers
        for seed in args.seeds
    ]
    t0 = time.time()
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(lambda j: _job(args, *j), jobs))
    summary = aggregate(rows)
    for key, s in summary.items():
        print(f"{key:24s} {s['mean']:.3f} ± {s['sd']:.3f}  {s['values']}")
    out = {
        "config": shown_path(args.config),
        "overrides": [  # a cache folder is this machine's business, not the result's
            o.split("=", 1)[0] + "=<games cache>" if o.split("=", 1)[0].endswith("cache_dir") else o
            for o in args.overrides
        ],
        "split": args.split,
        "iterations": args.iterations,
        "episodes_per_task": args.episodes_per_task,
        "summary": summary,
        "runs": rows,
        "wall_s": round(time.time() - t0, 1),
    }
    path = write_json(f"library_worth_{args.name}_{args.split}", out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
