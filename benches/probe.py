"""Supervised probe: can the demo's model learn coin collector's one real decision from clean labels?

In a coin-collector level-3 game the rooms form a chain: the start room has one exit, the middle
room two (back the way the agent came, or on towards the coin), the last room holds the coin. The
only decision the demo policy has to learn besides "move" and "take coin" is the middle room's:
greedy play that takes the wrong exit there loops between two rooms for ever. This probe asks
whether the demo's model, prompt and training games can learn that decision *at all*, with the
RL noise removed:

1. Play the demo's training and held-out games with the untrained policy (sampled, the demo's
   prompt path, no retrieval) and keep every step taken in a middle room (two ``go`` actions and
   no ``take``). Its label is the walkthrough's second move (the exit towards the coin).
2. Train the policy by cross-entropy over the admissible actions of the training-game steps
   (AdamW, batches of 32) and report, every ``--eval-every`` steps, the fraction of steps whose
   argmax is the label: on the training games and on the held-out games.

    python -m benches probe                                   # the demo config, 48 train games
    python -m benches probe --set env.games.train=192 --steps 600
    python -m benches probe --set prompt.history_window=1 --set prompt.history_chars=0

Output: ``benches/out/probe<tag>.json`` and a Markdown table on stdout. One torch thread.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import random
import time
from pathlib import Path
from typing import Any

from benches.common import machine, table, write_json

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "examples" / "configs" / "textworld_cpu.yaml"


def _decision_steps(trainer: Any, split: str, rounds: int, seed: int) -> list[Any]:
    """Middle-room steps of ``rounds`` x G sampled episodes per game of ``split``, labelled."""
    import torch

    from slea.envs.textworld import compass_map
    from slea.rollout import EpisodeSpec

    policy = trainer.policy
    tasks = [(t.name, dict(t.options)) for t in trainer.tasks.tasks(split)]
    augment = split == "train" and trainer.config.env.games.compass_augment
    rng = random.Random(seed)
    games = trainer.tasks.games[split]
    group = trainer.config.rollout.group_size
    per_wave = max(1, trainer.venv.num_envs // group)
    venv = trainer.evaluator._venv(split, per_wave * group)
    labelled = []
    for r in range(rounds):
        for lo in range(0, len(tasks), per_wave):
            wave = tasks[lo : lo + per_wave]
            if augment:  # a random compass symmetry per task, as the trainer draws them
                wave = [(n, {**o, "compass": rng.randrange(8)}) for n, o in wave]
            specs = [
                EpisodeSpec(group=g, options=opts, task_id=name)
                for g, (name, opts) in enumerate(wave)
                for _ in range(group)
            ]
            gen = torch.Generator().manual_seed(seed * 1000 + r * 100 + lo)
            ro = trainer._play(
                venv, specs, clusterer=trainer.clusterer, library=None, generator=gen, seed=lo
            )
            for row, rec in enumerate(ro.records):
                names = [policy.tokenizer.decode(list(c[:-1])).strip() for c in rec.candidates]
                moves = [n for n in names if n.startswith("go ")]
                if len(moves) != 2 or any(n.startswith("take") for n in names):
                    continue
                game = games[int(wave[int(ro.group[row])][1]["task_id"])]
                label = compass_map(
                    _walkthrough(game)[1], wave[int(ro.group[row])][1].get("compass", 0)
                )
                if label in names:
                    labelled.append(dataclasses.replace(rec, index=names.index(label)))
    return labelled


@functools.cache
def _walkthrough(game: Path) -> list[str]:
    """The game's walkthrough, read from the .json written beside its .z8."""
    import textworld

    return list(textworld.Game.load(str(game.with_suffix(".json"))).walkthrough)


def _accuracy(policy: Any, steps: list[Any], chunk: int = 64) -> float:
    """Fraction of steps whose highest-scoring action is the label (greedy play's choice)."""
    import torch

    from slea.policy.forward import candidate_scores

    hits = 0
    with torch.no_grad():
        for lo in range(0, len(steps), chunk):
            part = steps[lo : lo + chunk]
            scores = candidate_scores(
                policy.model,
                [r.prompt_ids for r in part],
                [r.candidates for r in part],
                policy.pad_id,
            )
            for rec, row in zip(part, scores.split([len(r.candidates) for r in part]), strict=True):
                hits += int(int(row.argmax()) == rec.index)
    return hits / max(len(steps), 1)


def main(argv: list[str]) -> int:
    import torch

    import slea.envs  # noqa: F401  (registers the envs)
    from slea.train.config import TrainConfig
    from slea.train.trainer import Trainer

    ap = argparse.ArgumentParser(prog="python -m benches probe", description=__doc__)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="K=V")
    ap.add_argument("--steps", type=int, default=400, help="optimizer steps")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=1, help="episodes per game / group size")
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tag", default="", help="output name suffix: benches/out/probe<tag>.json")
    ap.add_argument("--run-dir", default="", help="default: benches/out/probe<tag>-run")
    args = ap.parse_args(argv)

    run_dir = args.run_dir or str(ROOT / "benches" / "out" / f"probe{args.tag}-run")
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    cfg = TrainConfig.from_yaml(
        BASE,
        [
            f"run.dir={run_dir}",
            "run.overwrite=true",
            "train.threads=1",
            f"train.seed={args.seed}",
            *args.overrides,
        ],
    )
    t0 = time.perf_counter()
    with Trainer(cfg) as trainer:
        train = _decision_steps(trainer, "train", args.rounds, args.seed)
        test = _decision_steps(trainer, "test", args.rounds, args.seed + 1)
        if not train or not test:
            raise SystemExit("no middle-room steps found (is this a coin-collector level-3 set?)")
        policy = trainer.policy
        opt = torch.optim.AdamW(
            policy.trainable_parameters(), lr=args.lr, weight_decay=cfg.update.weight_decay
        )
        rows = [
            {"step": 0, "train_acc": _accuracy(policy, train), "test_acc": _accuracy(policy, test)}
        ]
        for step in range(1, args.steps + 1):
            batch = rng.sample(train, min(args.batch, len(train)))
            loss = -policy.unit_logprobs(batch).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % args.eval_every == 0 or step == args.steps:
                rows.append(
                    {
                        "step": step,
                        "loss": round(float(loss.detach()), 4),
                        "train_acc": _accuracy(policy, train),
                        "test_acc": _accuracy(policy, test),
                    }
                )
                print(rows[-1], flush=True)
        games = {s: len(trainer.tasks.tasks(s)) for s in ("train", "test")}
    payload = {
        "machine": machine(),
        "overrides": args.overrides,
        "games": games,
        "decision_steps": {"train": len(train), "test": len(test)},
        "lr": args.lr,
        "batch": args.batch,
        "curve": rows,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    path = write_json(f"probe{args.tag}", payload)
    print(
        f"games {games}, middle-room steps train {len(train)} / held-out {len(test)}; "
        f"{payload['wall_s']} s"
    )
    print(table(rows, ["step", "train_acc", "test_acc"]))
    print(f"wrote {path}")
    return 0
