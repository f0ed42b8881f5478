"""benches.library_worth: the summary over seeds, and one worker end to end on the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")
library_worth = pytest.importorskip("benches.library_worth")

ROOT = Path(__file__).resolve().parents[1]


def _row(seed: int, distiller: str, **arms: float) -> dict:
    row = {"seed": seed, "distiller": distiller, "library_size": 10 + seed}
    row.update({arm: {"success": value, "episodes": 16} for arm, value in arms.items()})
    return row


def test_aggregate_pairs_each_arm_with_the_same_seeds_empty_library() -> None:
    rows = [
        _row(0, "rule", none=0.5, step=0.75, task=0.5),
        _row(1, "rule", none=0.25, step=0.5, task=0.5),
        _row(0, "llm", step=0.5),
        _row(1, "llm", step=0.25),
    ]
    out = library_worth.aggregate(rows)
    assert out["none"]["values"] == [0.5, 0.25]
    assert out["rule_step"]["mean"] == 0.625
    assert out["rule_step_minus_none"]["values"] == [0.25, 0.25]
    assert out["rule_step_minus_none"]["sd"] == 0.0
    assert out["rule_task_minus_none"]["values"] == [0.0, 0.25]
    assert out["llm_step_minus_none"]["values"] == [0.0, 0.0]
    assert "llm_task" not in out  # an arm a distiller did not play is not reported
    assert out["rule_library_size"]["values"] == [10.0, 11.0]


@pytest.mark.slow
def test_worker_on_the_tiny_model() -> None:
    pytest.importorskip("textworld")
    from conftest_envs import games_cache

    out = library_worth.worker(
        ROOT / "examples" / "configs" / "textworld_tiny_test.yaml",
        [f"env.games.cache_dir={games_cache()}", "train.threads=1", "eval.max_tasks=2"],
        seed=0,
        distiller="rule",
        iterations=1,
        split="test",
        episodes_per_task=1,
    )
    assert [t["iteration"] for t in out["train"]] == [1]
    assert len(out["library_sample"]) == min(out["library_size"], 12)
    assert out["none"]["episodes"] == out["step"]["episodes"] == out["task"]["episodes"] >= 1
    assert out["none"]["retrieval_fraction"] == 0.0
    if out["library_size"]:  # task level may find nothing for a first observation: not asserted
        assert out["step"]["retrieval_fraction"] > 0
