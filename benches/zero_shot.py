"""Zero-shot success of a configured policy against a uniform-random choice, on the same games.

``python -m benches zero_shot [--config FILE] [--set KEY=VALUE ...] [--split valid|test]
[--episodes-per-task N] [--no-greedy] [--max-tasks N] [--name LABEL]``

Builds a :class:`slea.Trainer` on the config with ``train.update_policy=false`` in a temporary run
directory (nothing is trained), then plays every task of the split through the trainer's own
evaluation path (the same prompts as training and ``slea eval``):

- ``sampled``: ``--episodes-per-task`` episodes per task, actions sampled from the policy;
- ``greedy``: one episode per task, the most likely action;
- ``random``: ``--episodes-per-task`` episodes per task, each action drawn uniformly from the
  env's admissible actions (the baseline; same games, same step limit, same seeds).

Prints one line per arm and writes ``benches/out/zero_shot_<name>_<split>.json``. The default
config is ``examples/configs/textworld_smollm2.yaml`` (needs ``slea models fetch
smollm2-135m-instruct`` once). Choose recipes on ``valid``; run ``test`` once per final recipe.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from benches.common import machine, shown_path, write_json

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "examples" / "configs" / "textworld_smollm2.yaml"


class RandomEngine:
    """A choice-mode engine that picks uniformly among the admissible actions.

    It renders prompts with ``engine`` (so the rollout runs exactly as with the policy) but never
    calls a model.
    """

    mode = "choice"

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.version = 0
        self.prompt_tokens: list[int] = []
        """Length of every prompt it was given (the same prompts the policy sees)."""

    def encode_prompt(self, messages: Sequence[Mapping[str, str]]) -> list[int]:
        return list(self.engine.encode_prompt(messages))

    def count_tokens(self, text: str) -> int:
        return int(self.engine.count_tokens(text))

    def act(
        self,
        prompts: Sequence[Sequence[int]],
        admissible: Sequence[Sequence[str]] | None = None,
        *,
        greedy: bool = False,
        generator: Any = None,
    ) -> list[Any]:
        import torch

        from slea.engine import ActionRecord

        if admissible is None:
            raise ValueError("the random baseline needs the admissible actions")
        out = []
        for p, row in zip(prompts, admissible, strict=True):
            self.prompt_tokens.append(len(p))
            k = int(torch.randint(len(row), (1,), generator=generator))
            out.append(
                ActionRecord(
                    prompt_ids=tuple(p),
                    response_ids=(0,),
                    logprobs=(0.0,),
                    candidates=tuple((i,) for i in range(len(row))),
                    index=k,
                    text=row[k],
                )
            )
        return out

    def sync(self, learner: Any, version: int) -> None:
        self.version = int(version)


def summary(result: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers of one evaluation that the report keeps."""
    keys = ("success", "return", "episodes", "episode_length", "invalid_fraction", "steps")
    out = {k: result[k] for k in keys if k in result}
    out["valid_action_rate"] = 1.0 - float(result.get("invalid_fraction", 0.0))
    return out


def run(
    config: Path,
    overrides: Sequence[str],
    split: str,
    *,
    episodes_per_task: int,
    greedy: bool,
    max_tasks: int,
    random_baseline: bool = True,
) -> dict[str, Any]:
    """Evaluate the configured initial policy (sampled, greedy) and the random baseline."""
    import torch

    import slea
    from slea.train.config import TrainConfig

    with tempfile.TemporaryDirectory(prefix="slea-zero-shot-") as tmp:
        sets = [*overrides, f"run.dir={tmp}/run", "train.update_policy=false"]
        cfg = TrainConfig.from_yaml(config, sets)
        trainer = slea.Trainer(cfg)
        out: dict[str, Any] = {
            "config": shown_path(config),
            "overrides": list(overrides),
            "split": split,
            "policy": repr(trainer.policy),
            "torch_threads": torch.get_num_threads(),
            "prompt": {
                "rules": trainer.prompt.rules,
                "show_admissible": trainer.prompt.show_admissible,
                "history_window": trainer.prompt.history_window,
                "history_format": getattr(trainer.prompt, "history_format", "lines"),
                "max_prompt_tokens": trainer.prompt.max_prompt_tokens,
            },
        }
        try:
            arms: list[tuple[str, bool, int]] = [("sampled", False, episodes_per_task)]
            if greedy:
                arms.append(("greedy", True, 1))
            for name, is_greedy, n in arms:
                t0 = time.perf_counter()
                res = trainer.evaluate(
                    split, greedy=is_greedy, episodes_per_task=n, max_tasks=max_tasks
                )
                out[name] = {**summary(res), "seconds": round(time.perf_counter() - t0, 1)}
                print(_line(name, out[name]), flush=True)
            if random_baseline and trainer.policy.mode == "choice":
                engine = trainer.engine
                trainer.engine = rnd = RandomEngine(engine)
                try:
                    t0 = time.perf_counter()
                    res = trainer.evaluate(
                        split, episodes_per_task=episodes_per_task, max_tasks=max_tasks
                    )
                finally:
                    trainer.engine = engine
                out["random"] = {**summary(res), "seconds": round(time.perf_counter() - t0, 1)}
                print(_line("random", out["random"]), flush=True)
                lengths = sorted(rnd.prompt_tokens)
                out["prompt_tokens"] = {
                    "mean": round(sum(lengths) / max(len(lengths), 1), 1),
                    "p50": lengths[len(lengths) // 2] if lengths else 0,
                    "max": lengths[-1] if lengths else 0,
                }
                print(f"prompt tokens (random arm): {out['prompt_tokens']}", flush=True)
        finally:
            trainer.close()
    return out


def _line(name: str, r: Mapping[str, Any]) -> str:
    return (
        f"{name:8s} success {r['success']:.3f} over {r['episodes']} episodes, "
        f"valid actions {r['valid_action_rate']:.3f}, mean length {r.get('episode_length', 0):.1f} "
        f"({r['seconds']:.0f} s)"
    )


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benches zero_shot", description=__doc__)
    ap.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--split", default="valid", choices=["train", "valid", "test"])
    ap.add_argument("--episodes-per-task", type=int, default=4)
    ap.add_argument("--no-greedy", action="store_true")
    ap.add_argument("--no-random", action="store_true", help="skip the random baseline")
    ap.add_argument("--max-tasks", type=int, default=0)
    ap.add_argument("--name", default="", help="label of the output file (default: config stem)")
    args = ap.parse_args(argv)
    if args.episodes_per_task < 1:
        ap.error("--episodes-per-task must be >= 1")
    print(f"# {machine()}", flush=True)
    out = run(
        args.config,
        args.overrides,
        args.split,
        episodes_per_task=args.episodes_per_task,
        greedy=not args.no_greedy,
        max_tasks=args.max_tasks,
        random_baseline=not args.no_random,
    )
    name = args.name or args.config.stem
    path = write_json(f"zero_shot_{name}_{args.split}", out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
