"""Retrieval from an experience library in a plain gymnasium loop (no slea trainer).

The library here is seeded from solved levels: every step of a level's walkthrough becomes an
``example``-level strategy ("when you saw <observation>, the right action was <action>") linked to
the observation's cluster, the way slea's evolution stores worked steps (the library merges
near-identical lessons into one entry linked to every cluster where it applies, so it ends with
about one entry per move). Then the same levels are
played through :class:`slea.wrappers.ExperienceRetrieval`: at every step ``info["system_message"]``
holds the experiences for the current observation, and a stand-in policy reads the worked step
from it (an LLM would get the message as its system prompt); with no worked step it moves at
random. A run without the library (``--no-library``) shows what the experiences are worth.

    python examples/retrieval_wrapper_loop.py --levels 3 --episodes 6
    python examples/retrieval_wrapper_loop.py --library runs/x/checkpoints/iter_80/library.snap

Prints one line per episode and a summary line ``success: S/N ...``.
"""

from __future__ import annotations

import argparse
import random
import re

import gymnasium

import slea
from slea.wrappers import ExperienceRetrieval

WORKED_STEP = re.compile(r'the right action was "([^"]+)"')


def seed_library(env_id: str, levels: int) -> slea.ExperienceLibrary:
    """A library of worked steps from the walkthroughs of levels ``0 .. levels-1``."""
    library = slea.ExperienceLibrary(slea.LibraryConfig(max_strategies_per_step=1000))
    clusterer = slea.ObservationClusterer()
    env = gymnasium.make(env_id)
    for level in range(levels):
        obs, info = env.reset(options={"task_id": level})
        candidates = []
        for action in info["walkthrough"]:
            candidates.append(
                slea.Candidate(
                    f"In this position, move {action}.",
                    "strategy",
                    "example",
                    score=1.0,
                    cluster_ids=(clusterer.assign(obs),),
                    observation=obs,
                    action=action,
                )
            )
            obs, *_ = env.step(action)
        library.admit(candidates, iteration=level)
    return library


def policy(system_message: str, admissible: list[str], rng: random.Random) -> str:
    """Stand-in for an LLM: follow a worked step shown in the system message, else move at random."""
    shown = WORKED_STEP.findall(system_message)
    return shown[0] if shown else rng.choice(admissible)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="slea/Sokoban-v0")
    ap.add_argument("--levels", type=int, default=3, help="levels to seed from and play")
    ap.add_argument("--episodes", type=int, default=6)
    ap.add_argument("--max-steps", type=int, default=60)
    ap.add_argument("--budget-tokens", type=int, default=400)
    ap.add_argument("--library", help="a library snapshot (e.g. from `slea train`) instead")
    ap.add_argument("--no-library", action="store_true", help="play with an empty library")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    if args.library:
        library = slea.ExperienceLibrary.load(args.library)
    elif args.no_library:
        library = slea.ExperienceLibrary()
    else:
        library = seed_library(args.env, args.levels)
    env = ExperienceRetrieval(
        gymnasium.make(args.env, max_episode_steps=args.max_steps),
        library,
        slea.ObservationClusterer(),
        budget_tokens=args.budget_tokens,
        system_message=True,
    )
    rng = random.Random(args.seed)
    wins = steps = with_experiences = 0
    for episode in range(args.episodes):
        _, info = env.reset(seed=args.seed + episode, options={"task_id": episode % args.levels})
        done = False
        while not done:
            with_experiences += bool(info["experiences"])
            action = policy(info["system_message"], info["admissible_actions"], rng)
            _, _, terminated, truncated, info = env.step(action)
            steps += 1
            done = terminated or truncated
        wins += bool(info["won"])
        library.record_outcome(env.episode_experience_ids, bool(info["won"]), ignore_missing=True)
        print(
            f"episode {episode}: level {episode % args.levels}, won {info['won']}, "
            f"experiences shown {len(env.episode_experience_ids)}"
        )
    print(
        f"success: {wins}/{args.episodes}  steps: {steps}  steps with experiences: "
        f"{with_experiences}  library entries: {len(library)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
