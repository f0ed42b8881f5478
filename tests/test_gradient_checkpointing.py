"""model.gradient_checkpointing: the update recomputes layer activations and gets the same gradients."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from slea.algo.update import make_optimizer, update_policy  # noqa: E402
from slea.errors import ConfigError  # noqa: E402
from slea.policy.hf import LoraSpec, apply_lora, enable_gradient_checkpointing  # noqa: E402
from slea.policy.tiny import TinyModelSpec, tiny_policy  # noqa: E402
from slea.train.config import UpdateConfig  # noqa: E402

TEXTS = ["you are in the kitchen. an exit leads north.", "go north", "take coin", "look"] * 10
SPEC = TinyModelSpec(
    vocab_size=300, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2
)
ACTIONS = ["go north", "take coin", "look"]


def _policy(checkpointing: bool, lora: bool = False):
    policy = tiny_policy(TEXTS, SPEC, seed=0, max_new_tokens=4)
    if lora:
        torch.manual_seed(1)  # the same adapter initialisation for both policies
        spec = LoraSpec(r=4, alpha=8, target_modules=("q_proj", "v_proj"))
        policy.model = apply_lora(policy.model, spec).eval()  # as HFPolicy keeps it
    else:
        policy.set_reference(copy.deepcopy(policy.model))
    if checkpointing:
        assert enable_gradient_checkpointing(policy.model) == SPEC.num_layers
    calls = {"model": 0, "attention": 0}  # forwards with gradients on, of the model and a layer

    def count(key: str):
        def hook(*_):
            calls[key] += torch.is_grad_enabled()

        return hook

    attn = next(m for n, m in policy.model.named_modules() if n.endswith("layers.0.self_attn"))
    attn.register_forward_hook(count("attention"))
    policy.model.register_forward_hook(count("model"))
    return policy, calls


def _update(policy):
    g = torch.Generator().manual_seed(0)
    prompts = [
        policy.encode_prompt([{"role": "user", "content": f"room {i}: you are in the kitchen."}])
        for i in range(6)
    ]
    records = policy.act(prompts, [ACTIONS] * 6, generator=g)
    adv = np.linspace(-1, 1, len(records)).astype(np.float32)
    cfg = UpdateConfig(lr=1e-2, micro_batch_size=3, kl_beta=0.1)
    stats = update_policy(
        policy, make_optimizer(policy.trainable_parameters(), cfg), records, adv, cfg
    )
    grads = {n: p.grad.clone() for n, p in policy.model.named_parameters() if p.grad is not None}
    return records, stats, grads


@pytest.mark.parametrize("lora", [False, True])
def test_same_actions_and_gradients_with_layers_recomputed(lora: bool) -> None:
    plain, plain_calls = _policy(False, lora)
    ckpt, ckpt_calls = _policy(True, lora)
    r0, s0, g0 = _update(plain)
    r1, s1, g1 = _update(ckpt)
    assert [r.text for r in r0] == [r.text for r in r1]  # acting (no_grad) is unchanged
    assert [r.logprobs for r in r0] == [r.logprobs for r in r1]
    assert g0.keys() == g1.keys() and g0
    if lora:
        assert all("lora" in n for n in g1)  # LoRA gradients survive the checkpoint
    for name in g0:
        torch.testing.assert_close(g1[name], g0[name], atol=1e-7, rtol=1e-5)
    assert s1.loss == pytest.approx(s0.loss, abs=1e-6)
    # the layer really was recomputed: its attention ran again in the backward pass
    assert plain_calls["attention"] == plain_calls["model"] > 0
    assert ckpt_calls["attention"] == 2 * ckpt_calls["model"] > 0
    # the model stays in eval mode (no dropout): only the layers' own flag is set
    assert not ckpt.model.training
    assert not any(m.training for n, m in ckpt.model.named_modules() if n.endswith("self_attn"))


def test_a_model_without_support_is_a_config_error() -> None:
    class Plain(torch.nn.Module):
        supports_gradient_checkpointing = False

    with pytest.raises(ConfigError, match=r"model\.gradient_checkpointing"):
        enable_gradient_checkpointing(Plain())
