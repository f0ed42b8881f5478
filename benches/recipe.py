"""A training recipe over seeds, chosen on the valid split and tested once.

Trains a config (by default the CPU demo) at several seeds with validation games added
(``env.games.valid``) and only the valid split evaluated during training (``eval.splits=[valid]``),
so recipes and thresholds are chosen without looking at the held-out test games. ``--test`` then
plays the test split once on each finished run (``slea eval --run DIR --split test``); a recipe
name whose test result exists is refused, so a recipe is tested once (a later valid-only run
keeps that record; one with other settings under the same name is refused)::

    python -m benches recipe --name demo --seeds 0 1 2 --jobs 2             # valid only
    python -m benches recipe --name demo --seeds 0 1 2 --test               # then test, once
    python -m benches recipe --name demo_cc6 --set env.games.level=6 --test  # a harder set

Each run is ``slea train`` in a subprocess with one torch thread and no time budget (the number of
iterations decides, not the machine's speed). Run again with the same overrides, a finished seed is
reused and a seed killed mid-way (no ``summary.json``, the same ``config.yaml``) is resumed from its
latest checkpoint (``slea train --resume``; resume is exact, so the result is the same). Results (mean and sd over seeds of the final
success) are printed and written to ``benches/results/recipe_<name>.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benches.common import shown_path, subprocess_env

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "configs" / "textworld_cpu.yaml"
RESULTS = ROOT / "benches" / "results"


def train(config: Path, run_dir: Path, seed: int, extra: list[str], valid: int) -> dict[str, Any]:
    """Train one seed (or reuse a finished run with the same overrides); its summary."""
    overrides = [
        f"run.dir={run_dir}",
        f"train.seed={seed}",
        "train.threads=1",
        "train.time_budget_s=0",
        f"env.games.valid={valid}",
        "eval.splits=[valid]",
        *extra,
    ]
    stamp = run_dir / "recipe_overrides.json"
    if (run_dir / "summary.json").is_file() and stamp.is_file():
        saved = json.loads(stamp.read_text())
        if isinstance(saved, list):  # the first runs stored the overrides alone
            saved = {"overrides": saved, "wall_s": None}
        if saved["overrides"] == overrides:
            print(f"[seed {seed}] finished earlier with the same overrides: reused")
            summary = json.loads((run_dir / "summary.json").read_text())
            summary["wall_s"] = saved["wall_s"]
            return summary
    resumed = interrupted(config, run_dir, overrides)
    if resumed:  # killed before it finished: go on from its latest checkpoint (exact resume)
        print(f"[seed {seed}] interrupted earlier with the same overrides: resumed")
        args = [sys.executable, "-m", "slea", "train", "--resume", str(run_dir), "--quiet"]
    else:
        args = [sys.executable, "-m", "slea", "train", "--config", str(config), "--quiet"]
        for o in [*overrides, "run.overwrite=true"]:
            args += ["--set", o]
    t0 = time.time()
    proc = subprocess.run(args, env=subprocess_env(), capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"seed {seed} failed:\n{proc.stderr[-3000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    summary["wall_s"] = time.time() - t0  # a resumed run's: this process's part only
    record = {"overrides": overrides, "wall_s": summary["wall_s"], "resumed": resumed}
    stamp.write_text(json.dumps(record))
    print(f"[seed {seed}] trained in {summary['wall_s']:.0f} s")
    return summary


def interrupted(config: Path, run_dir: Path, overrides: list[str]) -> bool:
    """True for a run that was started with these very overrides (its ``config.yaml`` is what
    they give) and did not finish (no ``summary.json``): a recipe killed mid-way (a closed
    session, a crash) goes on where it stopped instead of training that seed again."""
    if (run_dir / "summary.json").is_file() or not (run_dir / "config.yaml").is_file():
        return False
    from slea.errors import SleaError
    from slea.train.config import TrainConfig

    try:
        have = TrainConfig.from_yaml(run_dir / "config.yaml", [])
        # as `slea train --quiet --set ... --set run.overwrite=true` wrote it
        want = TrainConfig.from_yaml(
            config, [*overrides, "run.overwrite=true", "logging.progress=false"]
        )
    except (SleaError, OSError, ValueError) as exc:
        print(f"[{run_dir.name}] config.yaml cannot be read ({exc}): trained again from the start")
        return False
    return have == want


def test_once(run_dir: Path, episodes: int) -> dict[str, Any]:
    """``slea eval --run DIR --split test`` on a finished run."""
    out = run_dir / "test_result.json"
    args = [sys.executable, "-m", "slea", "eval", "--run", str(run_dir), "--split", "test"]
    args += ["--episodes", str(episodes), "--out", str(out)]
    proc = subprocess.run(args, env=subprocess_env(), capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"test eval of {run_dir} failed:\n{proc.stderr[-3000:]}")
    return json.loads(out.read_text())


def _write(out: Path, result: dict[str, Any]) -> None:
    from slea.rundir import atomic_write_text

    atomic_write_text(out, json.dumps(result, indent=1) + "\n")


def _stats(values: list[float]) -> dict[str, float]:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "sd": sd, "min": min(values), "max": max(values)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benches recipe", description=__doc__)
    p.add_argument("--name", required=True, help="recipe name (results file and run folder)")
    p.add_argument("--config", type=Path, default=DEMO)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--valid", type=int, default=16, help="validation games (env.games.valid)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--root", type=Path, default=ROOT / "runs" / "recipe")
    p.add_argument("--test", action="store_true", help="play the test split once per run")
    p.add_argument("--test-episodes", type=int, default=4)
    args = p.parse_args(argv)
    out = RESULTS / f"recipe_{args.name}.json"
    previous = json.loads(out.read_text()) if out.is_file() else {}
    shown = [  # a cache folder is this machine's business, not the result's
        o.split("=", 1)[0] + "=<games cache>" if o.split("=", 1)[0].endswith("cache_dir") else o
        for o in args.set
    ]
    if args.test and "test" in previous:
        print(f"recipe {args.name!r} was tested already ({out}); a recipe is tested once")
        return 2
    if "test" in previous and (previous.get("overrides"), previous.get("config")) != (
        shown,
        shown_path(args.config),
    ):
        print(f"recipe {args.name!r} was tested with other settings ({out}): choose a new name")
        return 2
    runs = {s: args.root / args.name / f"seed{s}" for s in args.seeds}
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {
            s: pool.submit(train, args.config, d, s, list(args.set), args.valid)
            for s, d in runs.items()
        }
        summaries, failed = {}, {}
        for s, f in futures.items():  # a failed seed does not lose the others' results
            try:
                summaries[s] = f.result()
            except RuntimeError as exc:
                failed[s] = str(exc)
    result: dict[str, Any] = {
        "name": args.name,
        "config": shown_path(args.config),
        "overrides": shown,
        "seeds": args.seeds,
        "date": time.strftime("%Y-%m-%d"),
        "per_seed": {},
    }
    if failed:  # the finished seeds only, no statistics: run again to finish (they are reused)
        result["failed"] = {s: msg.splitlines()[0] for s, msg in failed.items()}
    for s, summary in summaries.items():
        rows = summary["success"]
        result["per_seed"][s] = {
            key: rows[key]["trained"]["success"] for key in rows if rows[key].get("trained")
        } | {
            "untrained_" + key: rows[key]["untrained"]["success"]
            for key in rows
            if rows[key].get("untrained")  # none with eval.before=false
        }
        result["per_seed"][s]["wall_s"] = summary.get("wall_s")
        earlier = previous.get("per_seed", {}).get(str(s), {})
        for key in ("test_sampled", "test_greedy", "test_episodes"):  # played once: kept
            if key in earlier:
                result["per_seed"][s][key] = earlier[key]
    if "test" in previous:
        result["test"] = previous["test"]
    if failed:
        _write(out, result)
        for msg in failed.values():
            print(msg, file=sys.stderr)
        print(f"{len(failed)} of {len(args.seeds)} seeds failed; the others are in {out}")
        return 1
    keys = ["valid_sampled", "valid_greedy", "train_sampled"]  # those every seed evaluated
    keys = [k for k in keys if all(k in result["per_seed"][s] for s in args.seeds)]
    result["valid"] = {k: _stats([result["per_seed"][s][k] for s in args.seeds]) for k in keys}
    if args.test:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            tests = dict(
                zip(
                    args.seeds,
                    pool.map(lambda s: test_once(runs[s], args.test_episodes), args.seeds),
                    strict=True,
                )
            )
        for s, t in tests.items():
            result["per_seed"][s]["test_sampled"] = t["success_sampled"]
            result["per_seed"][s]["test_greedy"] = t["success_greedy"]
            result["per_seed"][s]["test_episodes"] = [t["episodes"], t["episodes_greedy"]]
        result["test"] = {
            k: _stats([result["per_seed"][s][k] for s in args.seeds])
            for k in ("test_sampled", "test_greedy")
        }
    _write(out, result)
    for split in ("valid", "test"):
        for k, st in result.get(split, {}).items():
            print(
                f"{args.name} {k}: {st['mean']:.2f} ± {st['sd']:.2f} (min {st['min']:.2f}) over {len(args.seeds)} seeds"
            )
    print(f"written: {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
