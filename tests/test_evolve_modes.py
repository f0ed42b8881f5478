"""Evolution modes wired into the trainer: training-free learning (frozen weights, evolving
library) and test-time evolution during evaluation (on a copy of the library)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")


def test_training_free_and_test_time_evolution(tmp_path, monkeypatch) -> None:
    """Frozen weights, evolving library; with eval.evolve evaluation evolves a copy of the
    library, never the training library."""
    pytest.importorskip("textworld", reason="the [envs] extra (textworld) is not installed")
    from test_trainer import tiny_config

    import slea.train.trainer as trainer_module
    from slea.train.trainer import Trainer

    cfg = tiny_config(
        tmp_path / "free", "train.update_policy=false", "train.iterations=3", "eval.evolve=true"
    )
    with Trainer(cfg) as trainer:
        before = {n: p.detach().clone() for n, p in trainer.policy.model.named_parameters()}
        metrics = [trainer.train_iteration() for _ in range(3)]
        for name, p in trainer.policy.model.named_parameters():
            assert torch.equal(before[name], p), f"{name} changed in training-free mode"
        assert len(trainer.library) > 0 and all(m["update"] == {} for m in metrics)
        assert any(m["evolution"].get("outcomes/admitted", 0) > 0 for m in metrics)
        evolved = []
        real = trainer_module.evolve_library

        def spy(library, episodes, **kw):
            evolved.append(library)
            return real(library, episodes, **kw)

        monkeypatch.setattr(trainer_module, "evolve_library", spy)
        version, size = trainer.library.version, len(trainer.library)
        snapshot = trainer.library._snapshot_bytes()
        result = trainer.evaluate()
        assert evolved and all(lib is not trainer.library for lib in evolved)
        assert (trainer.library.version, len(trainer.library)) == (version, size)
        assert trainer.library._snapshot_bytes() == snapshot  # no held-out text got in
        used = result["library"]
        assert used["evolved"] and used["entries"] == size and used["version"] == version
        assert used["source"] == "copy of the training library after iteration 3"
        assert used["entries_after"] > size  # the copy did learn from the held-out episodes
        assert result["steps"] >= result["episodes"] > 0
        assert 0.0 <= result["invalid_fraction"] <= 1.0
        monkeypatch.setattr(trainer_module, "evolve_library", real)
    cfg = tiny_config(tmp_path / "clean", "train.iterations=2")
    with Trainer(cfg) as trainer:
        for _ in range(2):
            trainer.train_iteration()
        version = trainer.library.version
        trainer.evaluate()
        assert trainer.library.version == version, "clean evaluation leaves the library alone"
