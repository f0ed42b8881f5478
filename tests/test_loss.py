"""PPO-clip + k3 KL loss: values, clipping, gradients, normalisation."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from slea.algo.loss import k3_kl, ppo_clip_loss  # noqa: E402


def test_unchanged_policy_gives_minus_mean_advantage_and_its_gradient() -> None:
    logp = torch.tensor([-1.0, -0.5, -2.0], requires_grad=True)
    adv = torch.tensor([1.0, -2.0, 0.5])
    parts = ppo_clip_loss(logp, logp.detach().clone(), adv, normalizer=3.0, kl_beta=0.0)
    assert float(parts.loss.detach()) == pytest.approx(-(1.0 - 2.0 + 0.5) / 3)
    parts.loss.backward()
    torch.testing.assert_close(logp.grad, -adv / 3)
    assert parts.clipped == 0 and parts.ratio_sum == pytest.approx(3.0) and parts.units == 3


@pytest.mark.parametrize(
    ("log_ratio", "adv", "grad_zero"),
    [
        (math.log(1.5), 1.0, True),  # positive advantage, ratio above 1+eps: clipped
        (math.log(1.1), 1.0, False),  # inside the range
        (math.log(0.5), -1.0, True),  # negative advantage, ratio below 1-eps: clipped
        (math.log(0.5), 1.0, False),  # positive advantage, ratio low: not clipped (pessimistic)
        (math.log(1.5), -1.0, False),  # negative advantage, ratio high: not clipped
    ],
)
def test_clipping_zeroes_the_gradient_only_on_the_clipped_side(log_ratio, adv, grad_zero) -> None:
    logp = torch.tensor([log_ratio], requires_grad=True)
    parts = ppo_clip_loss(logp, torch.zeros(1), torch.tensor([adv]), normalizer=1.0, clip_eps=0.2)
    parts.loss.backward()
    assert (float(logp.grad[0]) == 0.0) == grad_zero
    assert parts.clipped == int(grad_zero)
    ratio = math.exp(log_ratio)
    want = max(-adv * ratio, -adv * min(max(ratio, 0.8), 1.2))
    assert float(parts.loss.detach()) == pytest.approx(want)


def test_k3_matches_formula_is_nonnegative_and_unbiased() -> None:
    logp = torch.tensor([-1.0, -0.2, -3.0])
    ref = torch.tensor([-1.0, -0.7, -2.0])
    r = ref - logp
    torch.testing.assert_close(k3_kl(logp, ref), r.exp() - r - 1)
    assert float(k3_kl(logp, ref)[0]) == 0.0
    assert bool((k3_kl(torch.randn(100), torch.randn(100)) >= 0).all())
    # E_{x~pi}[k3] = KL(pi || ref) for categorical pi, ref
    g = torch.Generator().manual_seed(0)
    pi = torch.softmax(torch.randn(5, generator=g), 0)
    ref_p = torch.softmax(torch.randn(5, generator=g), 0)
    x = torch.multinomial(pi, 200_000, replacement=True, generator=g)
    est = k3_kl(pi.log()[x], ref_p.log()[x]).mean()
    exact = (pi * (pi.log() - ref_p.log())).sum()
    assert float(est) == pytest.approx(float(exact), abs=0.01)


def test_kl_term_is_weighted_and_pulls_towards_the_reference() -> None:
    logp = torch.tensor([-0.5, -1.5], requires_grad=True)
    ref = torch.tensor([-1.0, -1.0])
    parts = ppo_clip_loss(
        logp, logp.detach(), torch.zeros(2), normalizer=2.0, ref_logp=ref, kl_beta=0.5
    )
    assert float(parts.loss.detach()) == pytest.approx(
        0.5 * float(k3_kl(logp.detach(), ref).sum()) / 2
    )
    parts.loss.backward()
    # gradient descent moves logp towards ref
    assert float(logp.grad[0]) > 0 and float(logp.grad[1]) < 0


def test_normalizer_makes_split_sums_equal_the_whole() -> None:
    logp = torch.randn(10)
    old = logp + 0.3 * torch.randn(10)
    adv = torch.randn(10)
    ref = logp + 0.1 * torch.randn(10)
    whole = ppo_clip_loss(logp, old, adv, normalizer=10.0, ref_logp=ref)
    halves = [
        ppo_clip_loss(logp[s], old[s], adv[s], normalizer=10.0, ref_logp=ref[s])
        for s in (slice(0, 4), slice(4, 10))
    ]
    assert float(whole.loss) == pytest.approx(sum(float(h.loss) for h in halves), abs=1e-6)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="normalizer"):
        ppo_clip_loss(torch.zeros(2), torch.zeros(2), torch.zeros(2), normalizer=0.0)
    with pytest.raises(ValueError, match="shape mismatch"):
        ppo_clip_loss(torch.zeros(2), torch.zeros(3), torch.zeros(2), normalizer=1.0)
