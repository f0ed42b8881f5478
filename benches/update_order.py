"""Micro-batch order in the PPO update: episode order (what the update does) vs shuffled rows.

The update's mini-batches are random subsets of the batch; its micro-batches take their rows in
batch order (episode, then step), so the steps of one episode share a micro-batch and the packed
forward pass computes their common prompt prefix (system message, task, older history) once.
The reference is the same update with the rows in a shuffled order, as the update processed them
before: a micro-batch then mixes episodes and shares little more than the system message.

One training iteration of the config is played (the rollout a real run updates on), then the same
update (same rows in one mini-batch, same starting weights) runs in both orders, alternating,
``--reps`` times each; the loss must agree (the order changes only the float summation)::

    python -m benches update_order                        # the tiny CPU demo model
    python -m benches update_order --config examples/configs/textworld_smollm2.yaml --reps 2
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benches.common import load_average, machine, shown_path, write_json

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "examples" / "configs" / "textworld_cpu.yaml"


def measure(config: Path, overrides: list[str], reps: int, seed: int) -> dict[str, Any]:
    import numpy as np
    import torch

    import slea
    from slea.algo.update import make_optimizer, update_policy
    from slea.train.config import TrainConfig
    from slea.train.trainer import rollout_advantages, sample_episodes

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="slea-update-order-") as tmp:
        cfg = TrainConfig.from_yaml(
            config,
            [*overrides, f"run.dir={tmp}/run", f"train.seed={seed}", "logging.progress=false"],
        )
        with slea.Trainer(cfg) as trainer:
            specs = sample_episodes(
                trainer.tasks,
                cfg.rollout.tasks_per_iteration,
                cfg.rollout.group_size,
                trainer.task_rng,
            )
            t0 = time.perf_counter()
            rollout = trainer.play(specs, generator=trainer.sample_rng, seed=seed)
            play_s = time.perf_counter() - t0
            adv = rollout_advantages(rollout, cfg.advantage).advantage
            keep = [i for i, r in enumerate(rollout.records) if r.num_units]
            records = [rollout.records[i] for i in keep]
            adv = np.asarray(adv)[keep]
            policy = trainer.policy
            start = {n: p.detach().clone() for n, p in policy.model.named_parameters()}
            shuffle = np.random.default_rng(seed).permutation(len(records))
            tokens = np.mean([len(r.prompt_ids) for r in records])
            print(f"  {len(records)} decisions, prompts {tokens:.0f} tokens on average", flush=True)

            def run(order: str) -> tuple[float, float]:
                with torch.no_grad():
                    for n, p in policy.model.named_parameters():
                        p.copy_(start[n])
                opt = make_optimizer(policy.trainable_parameters(), cfg.update)
                rows = records if order == "episode" else [records[i] for i in shuffle]
                a = adv if order == "episode" else adv[shuffle]
                gen = torch.Generator().manual_seed(seed)
                # several mini-batches would pick other rows from the permuted batch: one each
                c = dataclasses.replace(cfg.update, minibatches=1)
                t = time.perf_counter()
                stats = update_policy(policy, opt, rows, a, c, generator=gen)
                return time.perf_counter() - t, float(stats.loss)

            times: dict[str, list[float]] = {"episode": [], "shuffled": []}
            losses: dict[str, float] = {}
            for r in range(reps):
                for order in ("episode", "shuffled") if r % 2 == 0 else ("shuffled", "episode"):
                    s, loss = run(order)
                    times[order].append(s)
                    losses[order] = loss
                    print(f"  {order:8s} {s:7.1f} s  loss {loss:.6g}", flush=True)
    prompt = [len(r.prompt_ids) for r in records]
    return {
        "decisions": len(records),
        "prompt_tokens_mean": round(float(np.mean(prompt)), 1),
        "micro_batch_size": cfg.update.micro_batch_size,
        "play_s": round(play_s, 1),
        "update_s": {k: [round(x, 2) for x in v] for k, v in times.items()},
        "best_s": {k: round(min(v), 2) for k, v in times.items()},
        "speedup": round(min(times["shuffled"]) / min(times["episode"]), 3),
        "loss": losses,
        "loss_gap": abs(losses["episode"] - losses["shuffled"]),
        "median_s": {k: round(statistics.median(v), 2) for k, v in times.items()},
    }


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benches update_order", description=__doc__)
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--reps", type=int, default=3, help="updates per order, alternating")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--name", default="update_order", help="output file name")
    args = ap.parse_args(argv)
    if args.reps < 1:
        ap.error("--reps must be >= 1")
    print(f"# {machine()}", flush=True)
    res = measure(args.config, args.overrides, args.reps, args.seed)
    print(
        f"{res['decisions']} decisions, prompts {res['prompt_tokens_mean']} tokens, micro-batches "
        f"of {res['micro_batch_size']}: episode order {res['best_s']['episode']} s, shuffled "
        f"{res['best_s']['shuffled']} s (x{res['speedup']}), loss gap {res['loss_gap']:.2g}"
    )
    out = {
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
        "load_average_at_end": load_average(),
        "config": shown_path(args.config),
        "overrides": [
            o if "cache_dir" not in o else "env.games.cache_dir=<games cache>"
            for o in args.overrides
        ],
        "reps": args.reps,
        **res,
    }
    print(f"written: {write_json(args.name, out)}")
    return 0
