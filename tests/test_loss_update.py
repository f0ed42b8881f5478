"""The update step: micro-batch accumulation == one batch, every parameter trains, bookkeeping."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from slea.algo.update import make_optimizer, update_policy  # noqa: E402
from slea.policy.hf import HFPolicy  # noqa: E402
from slea.policy.tiny import TinyModelSpec, tiny_policy  # noqa: E402
from slea.train.config import UpdateConfig  # noqa: E402

TEXTS = [
    "you are in the kitchen. an exit leads north.",
    "go north",
    "go south",
    "take coin",
    "look",
] * 10
SPEC = TinyModelSpec(
    vocab_size=300, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2
)
ACTIONS = ["go north", "go south", "take coin", "look"]


def _setup(mode: str = "choice", seed: int = 0):
    policy = tiny_policy(TEXTS, SPEC, seed=seed, mode=mode, max_new_tokens=4)
    policy.set_reference(copy.deepcopy(policy.model))
    g = torch.Generator().manual_seed(seed)
    prompts = [
        policy.encode_prompt([{"role": "user", "content": f"room {i}: you are in the kitchen."}])
        for i in range(9)
    ]
    records = policy.act(prompts, [ACTIONS[: 1 + i % 4] for i in range(9)], generator=g)
    adv = np.linspace(-1, 1, len(records)).astype(np.float32)
    return policy, records, adv


def _params(policy: HFPolicy) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in policy.model.named_parameters()}


@pytest.mark.parametrize("mode", ["choice", "generate"])
def test_split_micro_batches_equal_one_batch(mode: str) -> None:
    results = []
    for micro in (1, 4, 100):
        policy, records, adv = _setup(mode)
        cfg = UpdateConfig(lr=1e-2, micro_batch_size=micro, kl_beta=0.1)
        opt = make_optimizer(policy.trainable_parameters(), cfg)
        stats = update_policy(policy, opt, records, adv, cfg)
        grads = {n: p.grad.clone() for n, p in policy.model.named_parameters()}
        results.append((grads, stats))
    (g1, s1), (g4, _s4), (gall, sall) = results
    for name in gall:  # the accumulated gradient (left in .grad after the step) is the same
        torch.testing.assert_close(g1[name], gall[name], atol=1e-7, rtol=1e-5)
        torch.testing.assert_close(g4[name], gall[name], atol=1e-7, rtol=1e-5)
    assert s1.loss == pytest.approx(sall.loss, abs=1e-6)
    assert s1.grad_norm == pytest.approx(sall.grad_norm, rel=1e-5)


def test_tiny_model_trains_every_parameter_with_finite_loss() -> None:
    policy, records, adv = _setup("choice")
    before = _params(policy)
    cfg = UpdateConfig(lr=1e-2, micro_batch_size=3)
    opt = make_optimizer(policy.trainable_parameters(), cfg)
    stats = update_policy(policy, opt, records, adv, cfg)
    assert np.isfinite(stats.loss) and np.isfinite(stats.grad_norm) and stats.grad_norm > 0
    assert stats.ratio == pytest.approx(1.0, abs=1e-5)  # first pass: unchanged policy
    assert stats.clip_frac == 0.0 and stats.kl == pytest.approx(0.0, abs=1e-6)
    after = _params(policy)
    unchanged = [n for n in before if torch.equal(before[n], after[n])]
    assert not unchanged, f"parameters that did not change: {unchanged}"


def test_several_minibatches_and_epochs_take_that_many_steps_and_clip() -> None:
    policy, records, adv = _setup("choice")
    cfg = UpdateConfig(lr=5e-2, epochs=3, minibatches=2, micro_batch_size=2)
    opt = make_optimizer(policy.trainable_parameters(), cfg)
    stats = update_policy(
        policy, opt, records, adv * 5, cfg, generator=torch.Generator().manual_seed(0)
    )
    assert stats.optimizer_steps == 6
    assert stats.units == 3 * len(records)
    assert stats.ratio != pytest.approx(1.0, abs=1e-6)  # later passes see a moved policy


def test_micro_batches_of_a_shuffled_mini_batch_keep_batch_order() -> None:
    # consecutive rows (the steps of one episode) share a prompt prefix that the packed pass
    # computes once: the shuffle picks a mini-batch's rows, the micro-batches keep their order
    policy, records, adv = _setup("choice")
    index = {id(r): i for i, r in enumerate(records)}
    seen: list[list[int]] = []
    real = policy.unit_logprobs

    def spy(recs, **kw):  # type: ignore[no-untyped-def]
        seen.append([index[id(r)] for r in recs])
        return real(recs, **kw)

    policy.unit_logprobs = spy  # type: ignore[method-assign]
    cfg = UpdateConfig(lr=1e-2, minibatches=2, micro_batch_size=2, kl_beta=0.0)
    opt = make_optimizer(policy.trainable_parameters(), cfg)
    update_policy(policy, opt, records, adv, cfg, generator=torch.Generator().manual_seed(3))
    assert sorted(i for chunk in seen for i in chunk) == list(range(len(records)))
    first = [i for chunk in seen[:3] for i in chunk]  # mini-batch 1: 5 rows in 3 micro-batches
    assert first == sorted(first) and first != list(range(5))  # shuffled rows, in batch order


def test_zero_advantage_without_kl_changes_nothing() -> None:
    policy, records, _ = _setup("choice")
    before = _params(policy)
    cfg = UpdateConfig(kl_beta=0.0)
    opt = make_optimizer(policy.trainable_parameters(), cfg)
    stats = update_policy(policy, opt, records, np.zeros(len(records), np.float32), cfg)
    assert stats.loss == 0.0
    for n, p in _params(policy).items():
        torch.testing.assert_close(p, before[n], atol=0, rtol=0)


def test_bad_advantages() -> None:
    policy, records, adv = _setup("choice")
    cfg = UpdateConfig()
    opt = make_optimizer(policy.trainable_parameters(), cfg)
    with pytest.raises(ValueError, match="shape"):
        update_policy(policy, opt, records, adv[:-1], cfg)
    bad = adv.copy()
    bad[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        update_policy(policy, opt, records, bad, cfg)
    with pytest.raises(ValueError, match="trainable"):
        make_optimizer([], cfg)


@pytest.mark.parametrize("schedule", ["constant", "linear", "cosine"])
def test_scheduled_lr_runs_from_lr_to_the_final_ratio(schedule: str) -> None:
    from slea.algo.update import scheduled_lr
    from slea.train.config import UpdateConfig

    cfg = UpdateConfig(lr=2e-3, lr_schedule=schedule, lr_final_ratio=0.25)
    lrs = [scheduled_lr(cfg, p / 10) for p in range(11)]
    assert lrs[0] == pytest.approx(2e-3)
    assert lrs[-1] == pytest.approx(2e-3 if schedule == "constant" else 5e-4)
    assert all(a >= b for a, b in itertools.pairwise(lrs))  # never increases
    if schedule == "linear":
        assert lrs[5] == pytest.approx(1.25e-3)
    if schedule == "cosine":
        assert lrs[5] == pytest.approx(1.25e-3) and lrs[2] > 1.25e-3 + 0.3 * (2e-3 - 1.25e-3)
    assert scheduled_lr(cfg, -1.0) == lrs[0] and scheduled_lr(cfg, 7.0) == lrs[-1]  # clamped


def test_lr_schedule_is_validated() -> None:
    from slea.errors import ConfigError
    from slea.train.config import TrainConfig

    with pytest.raises(ConfigError, match=r"update\.lr_schedule.*constant, linear, cosine"):
        TrainConfig.from_dict({}, ["update.lr_schedule=step"])
    with pytest.raises(ConfigError, match=r"update\.lr_final_ratio"):
        TrainConfig.from_dict({}, ["update.lr_final_ratio=1.5"])
