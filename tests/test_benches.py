"""The benches' own machinery: equal interleaved rounds, agreement checks, upstream loading."""

from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

common = pytest.importorskip("benches.common")


def test_interleaved_gives_every_side_the_same_rounds_and_alternates() -> None:
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name) or name) for name in ("a", "b", "c")}
    out = common.interleaved(fns, 4)
    assert calls == ["a", "b", "c", "c", "b", "a", "a", "b", "c", "c", "b", "a"]
    assert {b.rounds for b in out.values()} == {4}
    assert out["b"].result == "b"
    assert all(0 <= b.cpu and 0 <= b.wall for b in out.values())


def test_interleaved_min_time_repeats_fast_calls_and_takes_the_mean() -> None:
    n = {"fast": 0}

    def fast() -> None:
        n["fast"] += 1

    out = common.interleaved({"fast": fast}, 2, min_time=0.01)
    assert n["fast"] > 2  # several calls per round
    assert out["fast"].wall < 0.01
    with pytest.raises(ValueError, match="rounds"):
        common.interleaved({"fast": fast}, 0)


def test_advantages_check_fails_beyond_the_tolerance() -> None:
    advantages = pytest.importorskip("benches.advantages")
    import slea

    cols = advantages.make_columns(300)
    ours = slea.compute_advantages(slea.StepBatch(**cols), "gigpo")
    other = ours.advantage.astype(np.float64)
    assert advantages.check("same", ours, other) == 0.0
    other[7] += 10 * advantages.TOLERANCE
    with pytest.raises(AssertionError, match="differs from slea"):
        advantages.check("off", ours, other)


def test_numpy_admission_decides_like_the_rule_model() -> None:
    library = pytest.importorskip("benches.library")
    import slea

    sys.path.insert(0, str(Path(__file__).parent))
    from reference.library_ref import RefLibrary

    rng = random.Random(5)
    emb = slea.HashingEmbedder(64)
    args = ((6, 3), (4, 2), 0.6, 0.2, 500, 4, 8, 4)
    ref, fair = RefLibrary(*args), library.NumpyAdmission(*args)
    fair.index_vectors()
    seen: set[str] = set()
    evicted = 0
    for it in range(1, 25):
        batch = library.candidates(rng, 6, 12)
        # a near duplicate of an earlier text now and then
        batch[0] = slea.Candidate(batch[1].text + " again", "strategy", "example", 0.9)
        vec = emb.embed([c.text for c in batch])
        cands = [library._ref_cand(c, v) for c, v in zip(batch, vec, strict=True)]
        decided = ref.admit(cands, it)
        assert decided == fair.admit(cands, it)
        assert sorted(ref.entries) == sorted(fair.rows["strategy"] + fair.rows["warning"])
        seen.update(o for o, _, _ in decided)
        evicted += sum(len(e) for _, _, e in decided)
    assert {"admitted", "duplicate", "below_floor"} <= seen and evicted > 0


def test_same_partition_ignores_the_ids() -> None:
    clustering = pytest.importorskip("benches.clustering")
    assert clustering.same_partition([5, 5, 9, 5], [0, 0, 1, 0])
    assert not clustering.same_partition([5, 5, 9, 5], [0, 0, 1, 1])
    a, b = object(), object()
    assert clustering.as_ids([a, b, a]) == [0, 1, 0]
    assert clustering.agreement([5, 5, 9, 5], [0, 0, 1, 0]) == 1.0
    assert clustering.agreement([0, 0, 0, 0], [0, 0, 1, 1]) == 0.5  # a merges what b splits
    assert clustering.agreement([0, 0, 1, 1], [0, 0, 0, 0]) == 0.5  # and the other way round


def test_upstream_loader_uses_the_checkout_and_cleans_up(tmp_path: Path) -> None:
    upstream = pytest.importorskip("benches.upstream")
    with pytest.raises(upstream.UpstreamError, match=r"gigpo/core_gigpo\.py not found"):
        upstream.core_gigpo(tmp_path)
    (tmp_path / "gigpo").mkdir()
    (tmp_path / "gigpo" / "core_gigpo.py").write_text(
        "from verl import DataProto\n\ndef f(batch: DataProto) -> int:\n    return 41 + 1\n"
    )
    had_verl = "verl" in sys.modules
    module = upstream.core_gigpo(tmp_path)
    assert module.f(None) == 42
    assert ("verl" in sys.modules) == had_verl
    forge = tmp_path / "verl" / "trainer" / "ppo" / "forge"
    forge.mkdir(parents=True)
    (forge / "experience_library.py").write_text(
        "class Experience: ...\nclass ExperienceLibrary: ...\n"
    )
    (forge / "step_experience.py").write_text(
        "from verl.trainer.ppo.forge.experience_library import ExperienceLibrary, Experience\n"
        "class ObservationIndex:\n    pass\n"
    )
    module = upstream.step_experience(tmp_path)
    assert module.ObservationIndex.__name__ == "ObservationIndex"
    assert not any(k == "verl" or k.startswith("verl.") for k in sys.modules if not had_verl)
    (forge / "step_experience.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(upstream.UpstreamError, match="failed to load"):
        upstream.step_experience(tmp_path)


def fake_game(rooms: list[str], moves: list[str]) -> dict:
    """The parts of a TextWorld game file that benches.layouts reads."""
    infos = [[f"r_{i}", {"type": "r", "name": name}] for i, name in enumerate(rooms)]
    world = [{"name": "east_of"} for _ in rooms[1:]]
    commands = [f"go {m}" for m in moves] + ["take coin"]
    return {"infos": [["P", {"type": "P", "name": None}], *infos], "world": world,
            "quests": [{"commands": commands}]}  # fmt: skip


def test_layouts_counts_layouts_and_shared_names(tmp_path: Path) -> None:
    import json

    layouts = pytest.importorskip("benches.layouts")
    games = {
        "train-0000.json": fake_game(["kitchen", "hall", "attic"], ["west", "west"]),
        "train-0001.json": fake_game(["cellar", "hall", "study"], ["north", "east"]),
        "test-0000.json": fake_game(["kitchen", "study", "hall"], ["south", "west"]),
        "params.json": {"kind": "coin"},
    }
    for name, game in games.items():
        (tmp_path / name).write_text(json.dumps(game))
    out = layouts.summarise(tmp_path)
    assert out["games"] == {"train": 2, "test": 1}
    assert out["layouts (rooms, connections, path)"] == {
        "train": {"3 rooms, 2 links, straight": 1, "3 rooms, 2 links, turn": 1},
        "test": {"3 rooms, 2 links, turn": 1},
    }
    assert out["test room names also in training games"] == 3
    assert out["test games whose set of room names is a training game's"] == 0
    with pytest.raises(SystemExit, match="no train"):
        layouts.summarise(tmp_path / "missing")


def test_recipe_resumes_a_seed_killed_mid_way_and_gets_the_same_result(tmp_path: Path) -> None:
    """A recipe run killed after a checkpoint (no summary yet) goes on from it when the recipe is
    run again with the same overrides (exact resume: the same final numbers as uninterrupted);
    other overrides start it again."""
    pytest.importorskip("torch")
    pytest.importorskip("textworld", reason="the [envs] extra (textworld) is not installed")
    from conftest_envs import games_cache

    recipe = pytest.importorskip("benches.recipe")
    config = Path(__file__).resolve().parents[1] / "examples/configs/textworld_tiny_test.yaml"
    run = tmp_path / "seed0"
    extra = [f"env.games.cache_dir={games_cache()}", "train.iterations=2", "checkpoint.every=1"]
    whole = recipe.train(config, run, 0, extra, 1)
    assert json.loads((run / "recipe_overrides.json").read_text())["resumed"] is False
    first_iteration = (run / "metrics.jsonl").read_text().splitlines()[:2]
    # killed after iteration 1's checkpoint: no summary, no stamp, no iteration 2 checkpoint
    for name in ("summary.json", "recipe_overrides.json"):
        (run / name).unlink()
    shutil.rmtree(run / "checkpoints" / "iter_2")
    same = [f"run.dir={run}", "train.seed=0", "train.threads=1", "train.time_budget_s=0"]
    same += ["env.games.valid=1", "eval.splits=[valid]", *extra]  # what recipe.train passes
    assert recipe.interrupted(config, run, same)
    assert not recipe.interrupted(config, run, [*same, "train.iterations=3"])
    again = recipe.train(config, run, 0, extra, 1)
    assert json.loads((run / "recipe_overrides.json").read_text())["resumed"] is True
    assert (run / "metrics.jsonl").read_text().splitlines()[:2] == first_iteration
    assert again["success"] == whole["success"]


def _fake_summary(success: float) -> dict[str, Any]:
    return {"success": {"valid_sampled": {"trained": {"success": success}}}, "wall_s": 1.0}


def test_recipe_keeps_the_finished_seeds_when_one_fails_and_its_test_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed seed does not lose the others' results (written, no statistics, exit 1); a
    recipe's test result survives a later valid-only run with the same settings, and the same
    name with other settings is refused (a test is played once per recipe)."""
    recipe = pytest.importorskip("benches.recipe")
    monkeypatch.setattr(recipe, "RESULTS", tmp_path)

    def train(config: Path, run_dir: Path, seed: int, extra: list[str], valid: int) -> Any:
        if seed == 1:
            raise RuntimeError("seed 1 failed:\nTraceback ...")
        return _fake_summary(0.5 + seed / 10)

    monkeypatch.setattr(recipe, "train", train)
    args = ["--name", "r", "--seeds", "0", "1", "2", "--root", str(tmp_path), "--set", "a=1"]
    assert recipe.main(args) == 1
    partial = json.loads((tmp_path / "recipe_r.json").read_text())
    assert partial["failed"] == {"1": "seed 1 failed:"} and "valid" not in partial
    assert sorted(partial["per_seed"]) == ["0", "2"]
    assert partial["per_seed"]["2"]["valid_sampled"] == 0.7

    monkeypatch.setattr(recipe, "train", lambda c, d, s, e, v: _fake_summary(0.5 + s / 10))
    tested = {"success_sampled": 0.9, "success_greedy": 0.4, "episodes": 4, "episodes_greedy": 1}
    monkeypatch.setattr(recipe, "test_once", lambda run_dir, episodes: tested)
    assert recipe.main([*args, "--test"]) == 0
    done = json.loads((tmp_path / "recipe_r.json").read_text())
    assert "failed" not in done and done["test"]["test_sampled"]["mean"] == 0.9
    assert done["valid"]["valid_sampled"]["mean"] == pytest.approx(0.6)
    assert recipe.main([*args, "--test"]) == 2  # tested once
    assert recipe.main(args) == 0  # valid only, same settings: the test record is kept
    again = json.loads((tmp_path / "recipe_r.json").read_text())
    assert again["test"] == done["test"] and again["per_seed"]["0"]["test_sampled"] == 0.9
    assert recipe.main([*args[:-1], "a=2"]) == 2  # other settings under a tested name
    assert json.loads((tmp_path / "recipe_r.json").read_text()) == again
