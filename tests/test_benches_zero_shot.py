"""benches.zero_shot: the uniform-random baseline engine and an end-to-end run on the tiny model."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
zero_shot = pytest.importorskip("benches.zero_shot")

ROOT = Path(__file__).resolve().parents[1]


class _Encoder:
    def encode_prompt(self, messages):
        return [len(m["content"]) for m in messages]

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def test_random_engine_picks_uniformly_among_the_admissible_actions() -> None:
    engine = zero_shot.RandomEngine(_Encoder())
    gen = torch.Generator().manual_seed(0)
    actions = ["go north", "go south", "take coin", "look"]
    recs = engine.act([[1, 2, 3]] * 4000, [actions] * 4000, generator=gen)
    counts = torch.bincount(torch.tensor([r.index for r in recs]), minlength=4).float() / 4000
    torch.testing.assert_close(counts, torch.full((4,), 0.25), atol=0.03, rtol=0)
    assert all(r.text == actions[r.index] and r.valid for r in recs)
    assert engine.prompt_tokens == [3] * 4000
    assert engine.encode_prompt([{"role": "user", "content": "abc"}]) == [3]
    with pytest.raises(ValueError, match="admissible"):
        engine.act([[1]], None)


def test_summary_reports_the_valid_action_rate() -> None:
    out = zero_shot.summary({"success": 0.5, "episodes": 4, "invalid_fraction": 0.25, "x": 1})
    assert out == {
        "success": 0.5,
        "episodes": 4,
        "invalid_fraction": 0.25,
        "valid_action_rate": 0.75,
    }


@pytest.mark.slow
def test_zero_shot_on_the_tiny_model(tmp_path: Path) -> None:
    pytest.importorskip("textworld")
    from conftest_envs import games_cache

    out = zero_shot.run(
        ROOT / "examples" / "configs" / "textworld_tiny_test.yaml",
        [f"env.games.cache_dir={games_cache()}", "train.threads=1"],
        "test",
        episodes_per_task=2,
        greedy=True,
        max_tasks=1,
    )
    assert out["sampled"]["episodes"] == 2 and out["greedy"]["episodes"] == 1
    assert out["random"]["episodes"] == 2 and out["random"]["valid_action_rate"] <= 1.0
    assert out["prompt_tokens"]["max"] >= out["prompt_tokens"]["p50"] > 0
