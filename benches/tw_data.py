"""TextWorld observations with ground-truth local states, for the clustering benchmark.

Games are generated with ``tw-make`` (about 3 s each, cached under ``~/.cache/slea/tw_games`` or
``$SLEA_CACHE/tw_games``), then played by a seeded uniformly random policy over the admissible
commands. Every step (the reset included) gives one :class:`Observation`:

- ``state``: the state text alone: the room description (the output of ``look``) and the
  inventory, as the agent sees them.
- ``full``: the same text with a status line (moves, score) and the last action's feedback in
  front, as an agent that is shown everything would see it.
- ``truth``: the ground-truth local state from the game's facts: the game, the room, every
  visible entity with where it is (on the floor, on a supporter, in an open container, in a
  closed container whose inside is hidden), the open/closed state of visible doors and
  containers (``locked`` reads as ``closed``: the text does not tell them apart) and the
  inventory.

The dataset is cached as JSON next to the games, keyed by its parameters, so a second run of the
benchmark costs nothing. ``python -m benches.tw_data`` builds it and prints a summary.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import random
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# (challenge, options): a mix of sparse worlds (coin collector), distractor-rich worlds with
# doors and containers (treasure hunter) and custom worlds with many portable objects.
GAME_SPECS: list[tuple[str, list[str]]] = [
    ("tw-coin_collector", ["--level", "40"]),
    ("tw-coin_collector", ["--level", "90"]),
    ("tw-treasure_hunter", ["--level", "10"]),
    ("tw-treasure_hunter", ["--level", "20"]),
    ("tw-treasure_hunter", ["--level", "30"]),
    ("custom", ["--world-size", "5", "--nb-objects", "12", "--quest-length", "4"]),
    ("custom", ["--world-size", "6", "--nb-objects", "16", "--quest-length", "5"]),
    ("custom", ["--world-size", "8", "--nb-objects", "20", "--quest-length", "6"]),
]


@dataclass(frozen=True)
class Observation:
    """One step of one episode: the two text forms and the ground-truth local state."""

    state: str
    full: str
    truth: str


def cache_dir() -> Path:
    """Where games and datasets are cached (``$SLEA_CACHE`` or ``~/.cache/slea``)."""
    root = os.environ.get("SLEA_CACHE") or str(Path.home() / ".cache" / "slea")
    return Path(root) / "tw_games"


def make_games(n_seeds: int) -> list[Path]:
    """Generate (or reuse) ``len(GAME_SPECS) * n_seeds`` games; returns their ``.z8`` paths."""
    out = cache_dir()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for seed in range(1, n_seeds + 1):
        for challenge, opts in GAME_SPECS:
            tag = "_".join([challenge, *(o.lstrip("-") for o in opts), f"s{seed}"])
            path = out / f"{tag}.z8"
            if not path.exists():
                cmd = ["tw-make", challenge, *opts, "--seed", str(seed), "--output", str(path)]
                subprocess.run([*cmd, "--silent", "-f"], check=True, capture_output=True)
            paths.append(path)
    return paths


def _name(var: object) -> str:
    return str(getattr(var, "name", var))


def local_state(game: str, facts: Iterable[object]) -> str:
    """The ground-truth local state of the player, as one canonical string (see module doc)."""
    room = None
    where: dict[str, tuple[str, str]] = {}  # entity -> (relation, holder)
    doors: dict[str, set[str]] = {}  # room -> doors linked to it
    status: dict[str, str] = {}
    for f in facts:
        name = f.name  # type: ignore[attr-defined]
        args = [_name(a) for a in f.arguments]  # type: ignore[attr-defined]
        if name == "at" and args[0] == "P":
            room = args[1]
        elif name in ("at", "on", "in"):
            where[args[0]] = (name, args[1])
        elif name == "link":
            doors.setdefault(args[0], set()).add(args[1])
        elif name in ("open", "closed", "locked"):
            status[args[0]] = "open" if name == "open" else "closed"
    visible: list[str] = []

    def holder_visible(holder: str) -> bool:
        if holder == room or holder == "I":
            return True
        rel_h = where.get(holder)
        if rel_h is None:
            return False
        if rel_h[0] == "in" and rel_h[1] != "I" and status.get(rel_h[1]) != "open":
            return False
        return holder_visible(rel_h[1])

    for entity, (rel, holder) in where.items():
        if holder == "I" or not holder_visible(holder):
            continue
        if rel == "in" and status.get(holder) != "open":
            continue  # inside a closed container: hidden
        visible.append(f"{rel}({entity},{holder})")
    for d in doors.get(room or "", ()):
        visible.append(f"door({d},{status.get(d, 'open')})")
    for entity, (rel, holder) in where.items():
        if rel == "at" and holder == room and entity in status:
            visible.append(f"state({entity},{status[entity]})")
    inventory = sorted(e for e, (rel, holder) in where.items() if rel == "in" and holder == "I")
    return f"{game}|{room}|{';'.join(sorted(visible))}|inv:{','.join(inventory)}"


def _feedback(text: str) -> str:
    """The feedback without the trailing prompt and status bar (``>   -= Room =-0/3``)."""
    cut = text.rfind("\n>")
    return (text[:cut] if cut >= 0 else text).strip()


def play(game: Path, episodes: int, steps: int, seed: int) -> list[Observation]:
    """Random-policy episodes on one game; one observation per reset and per step."""
    import textworld

    infos = textworld.EnvInfos(
        facts=True,
        description=True,
        inventory=True,
        admissible_commands=True,
        feedback=True,
        moves=True,
        score=True,
    )
    env = textworld.start(str(game), infos)
    rng = random.Random(seed)
    out: list[Observation] = []
    try:
        for _ in range(episodes):
            state = env.reset()
            for _ in range(steps + 1):
                text = f"{state.description.strip()}\n\n{state.inventory.strip()}"
                status = f"Moves: {state.moves or 0}    Score: {state.score or 0}"
                full = f"{status}\n{_feedback(state.feedback)}\n\n{text}"
                out.append(Observation(text, full, local_state(game.stem, state.facts)))
                if state.get("done") or not state.admissible_commands:
                    break
                command = rng.choice(sorted(state.admissible_commands))
                state, _, done = env.step(command)
                state["done"] = done
    finally:
        env.close()
    return out


def load(n_seeds: int = 2, episodes: int = 13, steps: int = 49) -> list[Observation]:
    """The dataset: ``n_seeds * len(GAME_SPECS)`` games, ``episodes`` episodes of up to ``steps``
    steps each (``n_seeds=2, episodes=13, steps=49`` gives about 10k observations). Cached."""
    key = json.dumps([GAME_SPECS, n_seeds, episodes, steps, 1]).encode()
    path = cache_dir() / f"dataset_{hashlib.sha256(key).hexdigest()[:12]}.json"
    if path.exists():
        rows = json.loads(path.read_text())
        return [Observation(*r) for r in rows]
    games = make_games(n_seeds)
    jobs = [(game, episodes, steps, 1000 + i) for i, game in enumerate(games)]
    with multiprocessing.Pool(min(len(jobs), os.cpu_count() or 1)) as pool:
        parts = pool.starmap(play, jobs)
    obs = [o for part in parts for o in part]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([[o.state, o.full, o.truth] for o in obs]))
    os.replace(tmp, path)
    return obs


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches.tw_data", description=__doc__)
    parser.add_argument("--small", action="store_true", help="one seed, 4 episodes per game")
    args = parser.parse_args(argv)
    data = load(1, 4, 49) if args.small else load()
    n_states = len({o.truth for o in data})
    n_texts = len({o.state for o in data})
    print(f"{len(data)} observations, {n_states} true states, {n_texts} distinct state texts")
    print(
        f"mean length: state {sum(len(o.state) for o in data) / len(data):.0f} chars, "
        f"full {sum(len(o.full) for o in data) / len(data):.0f} chars"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
