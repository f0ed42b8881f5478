"""What the held-out coin-collector games share with the training games: layouts and room names.

``python -m benches layouts [--games DIR]``

Reads the generated games of the CPU demo (default ``$SLEA_CACHE/textworld/coin-L3-s0``, or
``~/.cache/slea/textworld/coin-L3-s0``: the ``train-*.json`` and ``test-*.json`` game files that
``slea train --config examples/configs/textworld_cpu.yaml`` generates) and prints, per split, the
number of rooms and connections per game, the layout class of the winning path up to the compass
symmetries (``straight``: every move in the same direction; ``turn``: the direction changes), and
how the room names of the held-out games relate to the training games' (each name, and each
game's set of names). Also written to ``benches/out/layouts.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
from collections import Counter
from pathlib import Path

from benches.common import write_json


def default_dir() -> Path:
    root = os.environ.get("SLEA_CACHE") or str(Path.home() / ".cache" / "slea")
    return Path(root) / "textworld" / "coin-L3-s0"


def layout(game: dict) -> tuple[int, int, str]:
    """(rooms, connections, path class) of one TextWorld game file."""
    rooms = sum(1 for _, info in game["infos"] if info["type"] == "r")
    links = sum(1 for fact in game["world"] if fact["name"] in ("north_of", "east_of"))
    moves = [c.split()[-1] for c in game["quests"][0]["commands"] if c.startswith("go ")]
    turns = any(a != b for a, b in itertools.pairwise(moves))
    return rooms, links, "turn" if turns else "straight"


def room_names(game: dict) -> frozenset[str]:
    return frozenset(info["name"] for _, info in game["infos"] if info["type"] == "r")


def summarise(games_dir: Path) -> dict:
    by_split: dict[str, list[dict]] = {"train": [], "test": []}
    for path in sorted(games_dir.glob("*-*.json")):
        split = path.name.split("-")[0]
        if split in by_split:
            by_split[split].append(json.loads(path.read_text()))
    if not by_split["train"] or not by_split["test"]:
        raise SystemExit(f"no train-*.json and test-*.json games in {games_dir}")
    layouts = {s: Counter(layout(g) for g in gs) for s, gs in by_split.items()}
    names = {s: [room_names(g) for g in gs] for s, gs in by_split.items()}
    train_names = set().union(*names["train"])
    test_names = set().union(*names["test"])
    return {
        "games": {s: len(gs) for s, gs in by_split.items()},
        "layouts (rooms, connections, path)": {
            s: {f"{r} rooms, {c} links, {p}": n for (r, c, p), n in cnt.items()}
            for s, cnt in layouts.items()
        },
        "room names": {"train": len(train_names), "test": len(test_names)},
        "test room names also in training games": len(test_names & train_names),
        "test games whose set of room names is a training game's": sum(
            n in set(names["train"]) for n in names["test"]
        ),
    }


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m benches layouts", description=__doc__)
    p.add_argument("--games", type=Path, default=None, help="directory of the generated games")
    args = p.parse_args(argv)
    games_dir = args.games or default_dir()
    out = summarise(games_dir)
    print(f"games in {games_dir}")
    print(json.dumps(out, indent=2))
    path = write_json("layouts", {"command": "python -m benches layouts " + " ".join(argv),
                                  "games_dir": str(games_dir), **out})  # fmt: skip
    print(f"wrote {path}")
    return 0
