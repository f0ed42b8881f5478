"""Evolution modes wired into rollout and trainer: the self-consistency cascade, worked-step
demonstrations on/off, training-free learning (frozen weights, evolving library) and test-time
evolution during evaluation."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from test_rollout import SETTINGS, SPEC, SPECS, TEXTS, DictClusterer, Exp, FakeVec, key  # noqa: E402

from slea.experience.prompt import experience_line  # noqa: E402
from slea.policy.hf import HFPolicy  # noqa: E402
from slea.policy.tiny import tiny_policy  # noqa: E402
from slea.rollout import collect  # noqa: E402


@pytest.fixture(scope="module")
def policy() -> HFPolicy:
    return tiny_policy(TEXTS, SPEC, seed=0, mode="choice")


EXPS = [Exp(7, "keep moving east", "strategy"), Exp(9, "walking west wastes steps", "warning")]


def run(policy: HFPolicy, k: int, *, greedy: bool = False, calls: list | None = None):
    def retrieve(clusters, texts):
        if calls is not None:
            calls.append(len(texts))
        return [EXPS for _ in texts]

    return collect(
        policy,
        FakeVec(6),
        SPECS,
        max_steps=6,
        prompt=SETTINGS,
        clusterer=DictClusterer(),
        anchor_fn=key,
        action_key_fn=key,
        retrieve=retrieve,
        generator=torch.Generator().manual_seed(0),
        greedy=greedy,
        consistency_k=k,
    )


def test_cascade_off_changes_nothing(policy: HFPolicy) -> None:
    a, b = run(policy, 0), run(policy, 1)
    assert [r.text for r in a.records] == [r.text for r in b.records]
    assert a.retrieved == b.retrieved and all(r == (7, 9) for r in a.retrieved)
    assert a.cascade == {} and "cascade_checked" not in a.stats()


def test_sure_policy_skips_every_retrieval(policy: HFPolicy, monkeypatch) -> None:
    monkeypatch.setattr(policy, "temperature", 1e-4)  # k samples always agree
    calls: list[int] = []
    ro = run(policy, 3, calls=calls)
    c = ro.cascade
    assert c["checked"] == c["skipped"] == len(ro) and c["samples"] == 3 * len(ro)
    assert sum(calls) == 0 and all(r == () for r in ro.retrieved)
    assert c["saved_prompt_tokens"] == 0.0  # nothing retrieved in this rollout to estimate from
    assert c["sample_prompt_tokens"] > 0
    stored = torch.tensor([r.logprobs[0] for r in ro.records])
    torch.testing.assert_close(policy.unit_logprobs(ro.records).detach(), stored, atol=1e-5, rtol=0)


def test_unsure_policy_retrieves_where_samples_disagree(policy: HFPolicy, monkeypatch) -> None:
    monkeypatch.setattr(policy, "temperature", 50.0)  # near-uniform over 3 actions
    calls: list[int] = []
    ro = run(policy, 3, calls=calls)
    c = ro.cascade
    retrieved = sum(1 for r in ro.retrieved if r)
    assert 0 < c["skipped"] < c["checked"] == len(ro)
    assert sum(calls) == retrieved == c["checked"] - c["skipped"]
    assert c["saved_prompt_tokens"] > 0  # skipped steps x mean experience tokens of the others
    assert ro.stats()["cascade_skipped"] == c["skipped"]
    stored = torch.tensor([r.logprobs[0] for r in ro.records])
    torch.testing.assert_close(policy.unit_logprobs(ro.records).detach(), stored, atol=1e-5, rtol=0)


def test_cascade_stays_off_for_greedy_rollouts(policy: HFPolicy) -> None:
    ro = run(policy, 3, greedy=True)
    assert ro.cascade == {} and all(r == (7, 9) for r in ro.retrieved)


def test_demonstrations_switch() -> None:
    from slea.train.trainer import _without_demonstration

    demo = Exp(3, 'Attic: "go east", then "take coin", won (reward 1).', "strategy", "example",
               observation="-= Attic =- A coin.", action="go east")  # fmt: skip
    assert experience_line(demo).startswith("- Worked step:")
    plain = _without_demonstration(demo)
    assert experience_line(plain) == f"- {demo.text}"
    assert (plain.id, plain.zone, plain.level) == (3, "strategy", "example")


def test_config_keys() -> None:
    from slea.errors import ConfigError
    from slea.train.config import RetrievalConfig

    assert RetrievalConfig().consistency_k == 0 and RetrievalConfig().demonstrations
    with pytest.raises(ConfigError, match=r"retrieval\.consistency_k"):
        RetrievalConfig(consistency_k=-1)


def test_training_free_and_test_time_evolution(tmp_path) -> None:
    """Frozen weights, evolving library; evaluation evolves the library only with eval.evolve."""
    pytest.importorskip("textworld", reason="the [envs] extra (textworld) is not installed")
    from test_trainer import tiny_config

    from slea.train.trainer import Trainer

    cfg = tiny_config(
        tmp_path / "free",
        "train.update_policy=false",
        "train.iterations=3",
        "retrieval.consistency_k=2",
        "eval.evolve=true",
    )
    with Trainer(cfg) as trainer:
        before = {n: p.detach().clone() for n, p in trainer.policy.model.named_parameters()}
        metrics = [trainer.train_iteration() for _ in range(3)]
        for name, p in trainer.policy.model.named_parameters():
            assert torch.equal(before[name], p), f"{name} changed in training-free mode"
        assert len(trainer.library) > 0 and all(m["update"] == {} for m in metrics)
        assert any(m["evolution"].get("outcomes/admitted", 0) > 0 for m in metrics)
        assert any("cascade_checked" in m["rollout"] for m in metrics if m["retrieval_active"])
        version = trainer.library.version
        trainer.evaluate()
        assert trainer.library.version != version, "eval.evolve lets evaluation evolve the library"
    cfg = tiny_config(tmp_path / "clean", "train.iterations=2")
    with Trainer(cfg) as trainer:
        for _ in range(2):
            trainer.train_iteration()
        version = trainer.library.version
        trainer.evaluate()
        assert trainer.library.version == version, "clean evaluation leaves the library alone"
