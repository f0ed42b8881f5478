"""benches.update_order: both orders update the same rows to the same loss."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("textworld", reason="the [envs] extra (textworld) is not installed")
update_order = pytest.importorskip("benches.update_order")

ROOT = Path(__file__).resolve().parents[1]


def test_update_order_on_the_tiny_model() -> None:
    from conftest_envs import games_cache

    out = update_order.measure(
        ROOT / "examples" / "configs" / "textworld_tiny_test.yaml",
        [f"env.games.cache_dir={games_cache()}", "update.micro_batch_size=4"],
        reps=2,
        seed=0,
    )
    assert out["decisions"] > 4 and out["micro_batch_size"] == 4
    assert len(out["update_s"]["episode"]) == len(out["update_s"]["shuffled"]) == 2
    assert out["loss_gap"] < 1e-5 and out["speedup"] > 0
