"""Retrieval from an experience library inside TRL's GRPO trainer, through its ``rollout_func``.

TRL's :class:`trl.GRPOTrainer` accepts a ``rollout_func(prompts, trainer)`` that produces the
completions itself. Here it plays one multi-turn episode of a slea text env per prompt, the env
wrapped in :class:`slea.wrappers.ExperienceRetrieval`: before every action the model's prompt
starts with ``info["system_message"]`` (the library's experiences for the current observation).
The episode becomes one completion: the model's action tokens (trained, ``env_mask`` 1) and the
env's answers (shown, not trained, ``env_mask`` 0); its reward is the episode's return.

The model is a tiny random-initialised one built offline by :mod:`slea.policy.tiny` (nothing is
downloaded), so the run only shows the plumbing; pass ``--model`` for a real Hugging Face model
directory. Needs ``pip install trl`` (plus slea's ``[train]`` extra).

    python examples/retrieval_wrapper_trl.py --steps 2 --out runs/trl-slea

Prints the trainer's per-step logs and a summary line ``done: N steps, ...``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import gymnasium

import slea
from slea.wrappers import ExperienceRetrieval


def seed_library(env_id: str, levels: int) -> slea.ExperienceLibrary:
    """A few lessons linked to the clusters of the first observations of ``levels`` levels."""
    library = slea.ExperienceLibrary()
    clusterer = slea.ObservationClusterer()
    env = gymnasium.make(env_id)
    clusters = tuple(clusterer.assign(env.reset(options={"task_id": i})[0]) for i in range(levels))
    library.admit(
        [
            slea.Candidate(
                "Push a box only toward a target.",
                "strategy",
                "principle",
                1.0,
                cluster_ids=clusters,
            ),
            slea.Candidate(
                "A box pushed into a corner can never be moved again.",
                "warning",
                "principle",
                0.0,
                cluster_ids=clusters,
            ),
        ],
        iteration=0,
    )
    return library


def make_rollout_func(
    env_id: str, library: slea.ExperienceLibrary, max_turns: int, action_tokens: int
):
    """A TRL ``rollout_func``: one retrieval-augmented episode per prompt ``"level <i>"``."""
    import torch

    clusterer = slea.ObservationClusterer()
    shown: list[int] = []

    def play(prompt: str, trainer: Any) -> dict[str, Any]:
        tok, model = trainer.processing_class, trainer.model
        env = ExperienceRetrieval(
            gymnasium.make(env_id, max_episode_steps=max_turns),
            library,
            clusterer,
            budget_tokens=120,
            tokenizer=tok,
            system_message=True,
        )
        obs, info = env.reset(options={"task_id": int(prompt.split()[-1])})
        prompt_ids: list[int] = []
        ids: list[int] = []
        mask: list[int] = []
        logps: list[float] = []
        total, done = 0.0, False
        while not done:
            text = f"{info['system_message']}\n\n{obs}\nAction:"
            turn = tok(text, add_special_tokens=False)["input_ids"]
            if not prompt_ids:
                prompt_ids = turn
            else:  # the env's answer (the new observation and system message): shown, not trained
                ids += turn
                mask += [0] * len(turn)
                logps += [0.0] * len(turn)
            context = torch.tensor([prompt_ids + ids])
            with torch.no_grad():
                out = model.generate(
                    context,
                    attention_mask=torch.ones_like(context),
                    do_sample=True,
                    max_new_tokens=action_tokens,
                    output_scores=True,
                    return_dict_in_generate=True,
                    pad_token_id=tok.pad_token_id,
                )
            new = out.sequences[0, context.shape[1] :].tolist()
            for step_scores, t in zip(out.scores, new, strict=False):
                logps.append(float(torch.log_softmax(step_scores[0].float(), -1)[t]))
            ids += new
            mask += [1] * len(new)
            action = tok.decode(new, skip_special_tokens=True).strip() or "noop"
            obs, reward, terminated, truncated, info = env.step(action)
            total += float(reward)
            done = terminated or truncated
        shown.extend(env.episode_experience_ids)
        return {
            "prompt_ids": prompt_ids,
            "completion_ids": ids,
            "logprobs": logps,
            "env_mask": mask,
            "env_return": total,
        }

    def rollout_func(prompts: list[str], trainer: Any) -> dict[str, list[Any]]:
        episodes = [play(p, trainer) for p in prompts]
        return {k: [e[k] for e in episodes] for k in episodes[0]}

    rollout_func.shown = shown  # type: ignore[attr-defined]
    return rollout_func


def env_return(completions: list[Any], env_return: list[float], **_: Any) -> list[float]:
    """The reward of each completion: its episode's return (forwarded by the rollout_func)."""
    return list(env_return)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="slea/Sokoban-v0")
    ap.add_argument("--model", help="a Hugging Face model directory (default: a tiny random one)")
    ap.add_argument("--steps", type=int, default=2, help="GRPO optimisation steps")
    ap.add_argument("--levels", type=int, default=2, help="levels in the prompt set")
    ap.add_argument("--num-generations", type=int, default=2, help="episodes per prompt (G)")
    ap.add_argument("--max-turns", type=int, default=3)
    ap.add_argument("--action-tokens", type=int, default=4)
    ap.add_argument("--out", default="runs/trl_retrieval")
    args = ap.parse_args(argv)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")

    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    out = Path(args.out)
    model = args.model
    if model is None:
        from slea.policy.tiny import TinyModelSpec, build_tiny

        env = gymnasium.make(args.env)
        texts = [env.reset(options={"task_id": i})[0] for i in range(args.levels)]
        spec = TinyModelSpec(
            vocab_size=400, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2
        )
        model = str(build_tiny(out / "model_init", texts, spec, seed=0))
    library = seed_library(args.env, args.levels)
    rollout = make_rollout_func(args.env, library, args.max_turns, args.action_tokens)
    g = args.num_generations
    config = GRPOConfig(
        output_dir=str(out),
        max_steps=args.steps,
        num_generations=g,
        per_device_train_batch_size=g,
        learning_rate=1e-3,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        bf16=False,
        seed=0,
        disable_tqdm=True,
    )
    prompts = Dataset.from_dict({"prompt": [f"level {i}" for i in range(args.levels)]})
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=env_return,
        args=config,
        train_dataset=prompts,
        rollout_func=rollout,
    )
    result = trainer.train()
    print(
        f"done: {result.global_step} steps, train loss {result.training_loss:.4f}, "
        f"experience ids shown {sorted(set(rollout.shown))}, library entries {len(library)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
