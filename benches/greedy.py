"""Greedy play of a trained run, with every admissible action's probability at every step.

``python -m benches greedy --run DIR [--split test] [--top 3] [--max-tasks N]``

Opens the run's latest checkpoint with ``slea.Trainer.load`` (nothing is written to the run),
plays every task of the split once greedily through the trainer's own evaluation path (the same
prompts, history window and retrieval as its evaluations), then scores every admissible action
of every step again with the policy (``slea.policy.forward.candidate_scores``, the scoring
``choice`` mode samples from, at the policy's temperature) and prints, per game, won or lost and
each step as ``[room] action p=... (others: ...)``. This is the diagnostic that
benches/RESULTS.md quotes for greedy failures (two-room loops, a fixed preference between
direction words, taking the first object). Choice-mode policies only. The full per-step detail is
written to ``benches/out/greedy_<run name>_<split>.json``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from benches.common import machine, write_json

_ROOM = re.compile(r"-=\s*(.+?)\s*=-")


def room_of(observation: str) -> str:
    """The last ``-= Room =-`` header of a TextWorld observation, else its first words."""
    found = _ROOM.findall(observation)
    return found[-1] if found else " ".join(observation.split()[:4])


def action_probabilities(policy: Any, record: Any) -> list[float]:
    """Probability of each candidate of a choice-mode ``record`` under ``policy``."""
    import torch

    from slea.policy.forward import candidate_scores

    with torch.no_grad():
        scores = candidate_scores(
            policy.model, [record.prompt_ids], [list(record.candidates)], policy.pad_id
        )
        return torch.softmax(scores / policy.temperature, 0).tolist()


def diagnose(run: Path, split: str, max_tasks: int) -> list[dict[str, Any]]:
    """Play ``split`` greedily; per game the steps with every action's probability."""
    import slea

    trainer = slea.Trainer.load(run)
    if trainer.engine.mode != "choice":
        raise SystemExit(f"{run}: policy.mode is {trainer.engine.mode!r}; this needs 'choice'")
    rollouts = []
    play = trainer._play

    def recording_play(*args: Any, **kwargs: Any) -> Any:
        rollout = play(*args, **kwargs)
        rollouts.append(rollout)
        return rollout

    trainer._play = recording_play  # type: ignore[method-assign]
    try:
        trainer.evaluate(split, greedy=True, max_tasks=max_tasks)
        games = []
        for rollout in rollouts:
            records = iter(rollout.records)  # rows are ordered by episode, then step
            for episode in rollout.episodes:
                steps = []
                for step in episode.steps:
                    record = next(records)
                    probs = action_probabilities(trainer.policy, record)
                    actions = list(step.admissible) or [step.action]
                    chosen = probs[record.index] if record.index >= 0 else 0.0
                    steps.append(
                        {
                            "room": room_of(step.observation),
                            "action": step.action,
                            "probabilities": dict(zip(actions, probs, strict=True)),
                            # greedy play took the argmax: the re-scoring must agree
                            "rescored_argmax": chosen >= max(probs) - 1e-5,
                        }
                    )
                games.append({"task": episode.task_id, "won": episode.won, "steps": steps})
        return games
    finally:
        trainer.close()


def render(game: dict[str, Any], top: int) -> str:
    lines = [f"{game['task']}: {'won' if game['won'] else 'lost'}"]
    for s in game["steps"]:
        ranked = sorted(s["probabilities"].items(), key=lambda kv: -kv[1])
        others = ", ".join(f"{a} {p:.2f}" for a, p in ranked[:top] if a != s["action"])
        lines.append(
            f"  [{s['room']}] {s['action']} p={s['probabilities'].get(s['action'], 0.0):.2f}"
            f" (others: {others})"
        )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benches greedy", description=__doc__)
    p.add_argument("--run", required=True, type=Path, help="a run directory with a checkpoint")
    p.add_argument("--split", default="test", choices=("test", "train"))
    p.add_argument("--top", type=int, default=3, help="actions shown per step")
    p.add_argument("--max-tasks", type=int, default=0, help="at most this many games (0: all)")
    args = p.parse_args(argv)
    games = diagnose(args.run, args.split, args.max_tasks)
    for game in games:
        print(render(game, args.top))
    won = sum(g["won"] for g in games)
    off = sum(not s["rescored_argmax"] for g in games for s in g["steps"])
    print(f"\n{won} of {len(games)} games won greedily ({args.split}); {machine()}")
    if off:
        print(f"warning: at {off} steps the re-scored argmax is not the action taken")
    path = write_json(
        f"greedy_{args.run.resolve().name}_{args.split}",
        {
            "command": "python -m benches greedy " + " ".join(argv),
            "run": str(args.run),
            "games": games,
        },
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
