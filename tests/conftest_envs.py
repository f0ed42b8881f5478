"""Shared helpers of the env tests (imported by tests/test_envs*.py; each module wraps them
in its own fixtures).

TextWorld games are generated once and cached on disk (``$SLEA_TEST_GAMES`` or
``~/.cache/slea/test-games/textworld-<version>/``, keyed by the generation parameters), so only
the first test run pays the ~15 s of generation on 2 cores.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent
ALFWORLD_DATA = ROOT / "data" / "alfworld"

#: Keys every env's info holds, at reset and after each step.
CONTRACT_KEYS = {
    "task",
    "task_id",
    "admissible_actions",
    "won",
    "invalid_action",
    "score",
    "max_score",
    "state_key",
}


def games_cache() -> Path:
    import textworld

    root = os.environ.get("SLEA_TEST_GAMES") or os.path.join(
        os.path.expanduser("~"), ".cache", "slea", "test-games"
    )
    return Path(root) / f"textworld-{textworld.__version__}"


@functools.cache
def coin_games() -> dict[str, list[Path]]:
    """Coin-collector level-3 games: 2 train and 1 test (generated once, then cached)."""
    pytest.importorskip("textworld", reason="the [envs] extra (textworld) is not installed")
    from slea.envs.textworld import make_splits

    return make_splits(games_cache(), {"train": 2, "test": 1}, seed=0, kind="coin", level=3)


@functools.cache
def treasure_game() -> Path:
    """One treasure-hunter level-5 game (rooms with containers and doors), cached."""
    pytest.importorskip("textworld", reason="the [envs] extra (textworld) is not installed")
    from slea.envs.textworld import make_games

    return make_games(games_cache(), 1, seed=0, kind="treasure", level=5, split="train")[0]


def play(env: Any, actions: list[str]) -> tuple[float, bool, dict[str, Any]]:
    """Play ``actions`` from the current state; returns (return, terminated, last info)."""
    total, terminated, info = 0.0, False, {}
    for action in actions:
        _, reward, terminated, truncated, info = env.step(action)
        total += reward
        if terminated or truncated:
            break
    return total, terminated, info
