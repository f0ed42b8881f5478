"""HFPolicy: choice mode on cached prompts, generate mode, token-exact records, parsers, LoRA."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from slea.errors import ConfigError  # noqa: E402
from slea.policy.forward import packing_costs, update_candidate_scores  # noqa: E402
from slea.policy.hf import (  # noqa: E402
    HFPolicy,
    LoraSpec,
    apply_lora,
    candidate_scores,
    packed_candidate_scores,
    parse_first_line,
    parse_last_line,
    parse_tag,
)
from slea.policy.tiny import TinyModelSpec, build_tiny, tiny_policy  # noqa: E402

TEXTS = [
    "You are in the kitchen. There is an exit to the north and a coin on the floor.",
    "You've entered a cookhouse. The room is well lit. There is an unblocked exit to the south.",
    "go north",
    "go south",
    "go east",
    "go west",
    "take coin",
    "look",
    "inventory",
] * 10
SPEC = TinyModelSpec(
    vocab_size=320, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2
)


@pytest.fixture(scope="module")
def policy() -> HFPolicy:
    torch.manual_seed(0)
    return tiny_policy(TEXTS, SPEC, seed=1, mode="choice")


def _prompts(policy: HFPolicy) -> list[list[int]]:
    a = policy.encode_prompt(
        [
            {"role": "system", "content": "Find the coin."},
            {"role": "user", "content": "You are in the kitchen. There is an exit to the north."},
        ]
    )
    b = policy.encode_prompt([{"role": "user", "content": "go south"}])
    return [a, b, a[3:]]


ACTIONS = [["go north", "take coin", "look", "inventory"], ["look"], ["go south", "go north"]]


def _naive_scores(policy: HFPolicy, prompt: list[int], actions: list[str]) -> torch.Tensor:
    out = []
    with torch.no_grad():
        for act in actions:
            c = list(policy.action_ids(act))
            logits = policy.model(input_ids=torch.tensor([prompt + c])).logits[0]
            lp = torch.log_softmax(logits.float(), -1)
            out.append(torch.stack([lp[len(prompt) - 1 + j, c[j]] for j in range(len(c))]).mean())
    return torch.stack(out)


def test_cached_choice_scores_match_naive_full_forward(policy: HFPolicy) -> None:
    prompts = _prompts(policy)
    cands = [[policy.action_ids(a) for a in row] for row in ACTIONS]
    with torch.no_grad():
        got = candidate_scores(policy.model, prompts, cands, policy.pad_id)
    want = torch.cat(
        [_naive_scores(policy, p, row) for p, row in zip(prompts, ACTIONS, strict=True)]
    )
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("min_shared", "max_row_tokens"), [(1, 4096), (4, 60), (1000, 4096)])
def test_packed_scores_of_episode_prompts_match_separate_scoring(
    policy: HFPolicy, min_shared: int, max_row_tokens: int
) -> None:
    """Steps of an episode share a prefix; packing them in one row changes no score."""
    system = {"role": "system", "content": "Find the coin."}
    history = ["You are in the kitchen.", "go north", "You are in the hall. There is a coin."]
    prompts = [
        policy.encode_prompt([system, {"role": "user", "content": " ".join(history[:k])}])
        for k in range(1, 4)
    ]
    prompts += [
        prompts[-1],
        prompts[0][:5],
        _prompts(policy)[1],
    ]  # repeat, a pure prefix, unrelated
    acts = [ACTIONS[0], ACTIONS[1], ACTIONS[2], ["take coin", ""], ["look", "go south"], ACTIONS[0]]
    cands = [[policy.action_ids(a) for a in row] for row in acts]
    with torch.no_grad():
        want = candidate_scores(policy.model, prompts, cands, policy.pad_id)
        got = packed_candidate_scores(
            policy.model,
            prompts,
            cands,
            policy.pad_id,
            min_shared=min_shared,
            max_row_tokens=max_row_tokens,
        )
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_packed_rows_are_fewer_than_prompts(policy: HFPolicy) -> None:
    shapes: list[tuple[int, ...]] = []
    handle = policy.model.register_forward_pre_hook(
        lambda mod, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    system = {"role": "system", "content": "Find the coin."}
    prompts = [
        policy.encode_prompt([system, {"role": "user", "content": "go north " * k}])
        for k in range(1, 6)
    ]
    try:
        with torch.no_grad():
            packed_candidate_scores(policy.model, prompts, [[(5, 6)]] * 5, policy.pad_id)
    finally:
        handle.remove()
    assert shapes[0][0] == 1  # one row holds the five prompts
    assert shapes[0][1] < sum(len(p) for p in prompts)


def _count_forwards(policy: HFPolicy, fn) -> tuple[torch.Tensor, int]:  # type: ignore[no-untyped-def]
    calls: list[int] = []
    handle = policy.model.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        with torch.no_grad():
            out = fn()
    finally:
        handle.remove()
    return out, len(calls)


def test_update_scores_pack_shared_prefixes_and_not_unrelated_prompts(policy: HFPolicy) -> None:
    """The update packs prompts only when packing is estimated cheaper; the scores are the same
    either way."""
    system = {"role": "system", "content": "Find the coin. " * 12}
    shared = [
        policy.encode_prompt([system, {"role": "user", "content": "go north " * k}])
        for k in range(1, 7)
    ]
    unrelated = [
        policy.encode_prompt(
            [
                {"role": "system", "content": f"tip {k}: " + "take coin " * 12 * k},
                {"role": "user", "content": "look"},
            ]
        )
        for k in range(1, 7)
    ]
    cands = [[policy.action_ids(a) for a in ACTIONS[0]]] * 6
    for prompts, packs in ((shared, True), (unrelated, False)):
        cached, packed = packing_costs(prompts, cands, policy.model.config.hidden_size)
        assert (packed < cached) is packs
        got, passes = _count_forwards(
            policy, lambda p=prompts: update_candidate_scores(policy.model, p, cands, policy.pad_id)
        )
        assert passes == (1 if packs else 2)  # packed: one pass; cached: prompts, then candidates
        with torch.no_grad():
            want = candidate_scores(policy.model, prompts, cands, policy.pad_id)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_update_scores_under_a_ddp_wrapper_take_one_forward_call(policy: HFPolicy) -> None:
    """DDP: one forward per backward on every rank, whatever each rank's shard would prefer."""

    class Wrapper(torch.nn.Module):  # stands in for DistributedDataParallel (has .module)
        def __init__(self, module: torch.nn.Module) -> None:
            super().__init__()
            self.module = module

        def forward(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            return self.module(*args, **kwargs)

    prompts = [
        policy.encode_prompt([{"role": "system", "content": f"tip {k}: " + "take coin " * 9 * k}])
        for k in range(1, 5)
    ]
    cands = [[policy.action_ids(a) for a in ACTIONS[0]]] * 4
    wrapped = Wrapper(policy.model)
    calls: list[int] = []
    handle = wrapped.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        with torch.no_grad():
            got = update_candidate_scores(wrapped, prompts, cands, policy.pad_id)
            want = candidate_scores(policy.model, prompts, cands, policy.pad_id)
    finally:
        handle.remove()
    assert len(calls) == 1
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


def test_single_token_candidates_need_no_second_pass(policy: HFPolicy) -> None:
    prompts = _prompts(policy)[:2]
    cands = [[(policy.end_of_action_id,)], [(policy.end_of_action_id,), (5,)]]
    with torch.no_grad():
        got = candidate_scores(policy.model, prompts, cands, policy.pad_id)
        last = torch.log_softmax(
            policy.model(input_ids=torch.tensor([prompts[1]])).logits[0, -1].float(), -1
        )
    assert got.shape == (3,)
    torch.testing.assert_close(got[1:], last[[policy.end_of_action_id, 5]], atol=1e-5, rtol=0)


def test_choice_scores_all_actions_in_one_batched_pass(policy: HFPolicy) -> None:
    calls: list[tuple[int, ...]] = []
    handle = policy.model.register_forward_pre_hook(
        lambda mod, args, kwargs: calls.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    try:
        policy.choose(_prompts(policy), ACTIONS, generator=torch.Generator().manual_seed(0))
    finally:
        handle.remove()
    # one pass over the 3 prompts, then one pass over all 7 candidates, packed one row per
    # prompt on the cached keys/values (the cache is never copied per candidate)
    assert len(calls) == 2
    packed = [sum(len(policy.action_ids(a)) - 1 for a in row) for row in ACTIONS]
    assert calls[0][0] == 3 and calls[1] == (3, max(packed))


def test_choice_records_are_token_exact(policy: HFPolicy) -> None:
    gen = torch.Generator().manual_seed(3)
    prompts = _prompts(policy)
    recs = policy.choose(prompts, ACTIONS, generator=gen)
    for r, row in zip(recs, ACTIONS, strict=True):
        assert r.text == row[r.index]
        assert r.response_ids == policy.action_ids(r.text)
        assert r.response_ids[-1] == policy.end_of_action_id
        assert r.num_units == 1
    # recompute in a different batch composition (reversed, duplicated): same log-probs
    again = policy.unit_logprobs(list(reversed(recs)) + recs[:1])
    stored = torch.tensor([r.logprobs[0] for r in list(reversed(recs)) + recs[:1]])
    torch.testing.assert_close(again.detach(), stored, atol=1e-5, rtol=0)
    # the probabilities of one prompt's actions sum to one
    single = policy.unit_logprobs(
        [type(recs[0])(**{**recs[0].__dict__, "index": k}) for k in range(len(ACTIONS[0]))]
    )
    assert float(single.detach().exp().sum()) == pytest.approx(1.0, abs=1e-5)


def test_greedy_choice_takes_the_best_score(policy: HFPolicy) -> None:
    prompts = _prompts(policy)
    recs = policy.choose(prompts, ACTIONS, greedy=True)
    for p, row, r in zip(prompts, ACTIONS, recs, strict=True):
        assert r.index == int(_naive_scores(policy, p, row).argmax())


def test_choice_sampling_follows_the_softmax(policy: HFPolicy) -> None:
    prompt = _prompts(policy)[0]
    gen = torch.Generator().manual_seed(0)
    recs = policy.choose([prompt] * 2000, [ACTIONS[0]] * 2000, generator=gen)
    probs = torch.softmax(_naive_scores(policy, prompt, ACTIONS[0]), 0)
    freq = torch.bincount(torch.tensor([r.index for r in recs]), minlength=4).float() / 2000
    torch.testing.assert_close(freq, probs, atol=0.04, rtol=0)


def test_generate_records_are_token_exact_and_parsed(policy: HFPolicy) -> None:
    gen_policy = HFPolicy(
        policy.model,
        policy.tokenizer,
        mode="generate",
        parser="last_line",
        max_new_tokens=6,
        temperature=0.8,
        top_p=0.9,
    )
    prompts = _prompts(policy)
    recs = gen_policy.generate(prompts, generator=torch.Generator().manual_seed(0))
    assert all(1 <= len(r.response_ids) <= 6 for r in recs)
    assert all(len(r.logprobs) == len(r.response_ids) for r in recs)
    for r in recs:
        stop_at = [i for i, t in enumerate(r.response_ids) if t in gen_policy.stop_ids]
        assert not stop_at or stop_at[0] == len(r.response_ids) - 1  # stops at the first stop token
        assert r.valid == (parse_last_line(r.raw_text) is not None)
    stored = torch.tensor([lp for r in recs for lp in r.logprobs])
    again = gen_policy.unit_logprobs(list(recs))
    torch.testing.assert_close(again.detach(), stored, atol=1e-5, rtol=0)


def test_choice_and_generate_raise_no_deprecation_warnings(policy: HFPolicy) -> None:
    # transformers 5.24 renamed the cache argument (past_key_values -> cache) and warns on every
    # call with the old name: thousands of warnings per training run
    gen_policy = HFPolicy(policy.model, policy.tokenizer, mode="generate", max_new_tokens=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("error", DeprecationWarning)
        policy.choose(_prompts(policy), ACTIONS, generator=torch.Generator().manual_seed(0))
        gen_policy.generate(_prompts(policy), generator=torch.Generator().manual_seed(0))


def test_unparsable_generation_is_an_invalid_action(policy: HFPolicy) -> None:
    p = HFPolicy(
        policy.model, policy.tokenizer, mode="generate", parser=lambda text: None, max_new_tokens=2
    )
    (rec,) = p.generate([_prompts(policy)[0]], generator=torch.Generator().manual_seed(0))
    assert not rec.valid and rec.text == ""


def test_parsers() -> None:
    assert (
        parse_tag("think... <action>go north</action> <action> take coin </action>") == "take coin"
    )
    assert parse_tag("<ACTION>look</ACTION>") == "look"
    assert parse_tag("no tag here") is None
    assert parse_tag("<action>  </action>") is None
    assert parse_last_line("I think\n\ngo east\n") == "go east"
    assert parse_first_line("\n go east\nbecause") == "go east"
    assert parse_last_line("   ") is None


def test_default_chat_format_and_chat_template(policy: HFPolicy) -> None:
    msgs = [{"role": "system", "content": "rules"}, {"role": "user", "content": "obs"}]
    text = policy.tokenizer.decode(policy.encode_prompt(msgs))
    assert (
        text == "### system\nrules\n### user\nobs\n### assistant\n"
    )  # the tiny tokenizer lower-cases
    tok = policy.tokenizer
    tok.chat_template = "{% for m in messages %}[{{ m['role'] }}]{{ m['content'] }}{% endfor %}>"
    try:
        assert tok.decode(policy.encode_prompt(msgs)) == "[system]rules[user]obs>"
    finally:
        tok.chat_template = None


def test_bad_arguments_raise_clear_errors(policy: HFPolicy, tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"policy\.mode"):
        HFPolicy(policy.model, policy.tokenizer, mode="beam")
    with pytest.raises(ConfigError, match=r"policy\.temperature"):
        HFPolicy(policy.model, policy.tokenizer, temperature=0)
    with pytest.raises(ConfigError, match=r"policy\.parser"):
        HFPolicy(policy.model, policy.tokenizer, parser="json")
    with pytest.raises(ConfigError, match="end_of_action"):
        HFPolicy(policy.model, policy.tokenizer, end_of_action="<|nope|>")
    with pytest.raises(ConfigError, match=r"model\.path.*config\.json"):
        HFPolicy.from_pretrained(tmp_path / "missing")
    with pytest.raises(ValueError, match="admissible"):
        policy.act([[1, 2]])
    with pytest.raises(ValueError, match="at least one candidate"):
        policy.choose([[1, 2]], [[]])


def test_build_tiny_saves_a_loadable_model(tmp_path) -> None:
    path = build_tiny(tmp_path / "model", TEXTS, SPEC, seed=5)
    assert (path / "config.json").is_file() and (path / "tokenizer.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left
    loaded = HFPolicy.from_pretrained(path, mode="choice")
    again = tiny_policy(TEXTS, SPEC, seed=5)
    ids = loaded.encode_prompt([{"role": "user", "content": "go north"}])
    assert ids == again.encode_prompt([{"role": "user", "content": "go north"}])
    with torch.no_grad():
        a = loaded.model(input_ids=torch.tensor([ids])).logits
        b = again.model(input_ids=torch.tensor([ids])).logits
    torch.testing.assert_close(a, b)
    # byte-level: unseen words still encode and decode exactly (lower-cased)
    assert (
        loaded.tokenizer.decode(loaded.tokenizer.encode("Xylophone Zq!", add_special_tokens=False))
        == "xylophone zq!"
    )


def test_llama_arch_and_spec_validation() -> None:
    p = tiny_policy(
        TEXTS,
        TinyModelSpec(
            arch="llama",
            vocab_size=320,
            hidden_size=32,
            intermediate_size=64,
            num_layers=1,
            num_heads=2,
        ),
    )
    assert type(p.model).__name__ == "LlamaForCausalLM"
    with pytest.raises(ValueError, match="arch"):
        TinyModelSpec(arch="gpt5")
    with pytest.raises(ValueError, match="multiple of num_heads"):
        TinyModelSpec(hidden_size=30, num_heads=4)


def test_lora_trains_only_adapters_and_reference_is_the_base(policy: HFPolicy) -> None:
    base = tiny_policy(TEXTS, SPEC, seed=1)
    model = apply_lora(base.model, LoraSpec(r=2, alpha=4))
    p = HFPolicy(model, base.tokenizer, mode="choice")
    names = [n for n, prm in model.named_parameters() if prm.requires_grad]
    assert names and all("lora_" in n for n in names)
    recs = p.choose(_prompts(p), ACTIONS, generator=torch.Generator().manual_seed(0))
    # LoRA B starts at zero: the adapted policy equals the base, which is the reference
    torch.testing.assert_close(
        p.reference_logprobs(recs), p.unit_logprobs(recs).detach(), atol=1e-6, rtol=0
    )
    with torch.no_grad():
        for n, prm in model.named_parameters():
            if "lora_B" in n:
                prm.add_(0.5)
    assert not torch.allclose(p.reference_logprobs(recs), p.unit_logprobs(recs).detach(), atol=1e-4)


CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def test_chat_template_prompt_ends_with_the_assistant_opener(policy: HFPolicy) -> None:
    # the action is scored right after an opened assistant turn, never after the user's turn
    tok = policy.tokenizer
    msgs = [{"role": "system", "content": "rules"}, {"role": "user", "content": "obs"}]
    tok.chat_template = CHATML
    try:
        ids = policy.encode_prompt(msgs)
        closed = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=False)
    finally:
        tok.chat_template = None
    assert tok.decode(ids).endswith("<|im_end|>\n<|im_start|>assistant\n")
    assert ids == tok.encode(closed + "<|im_start|>assistant\n", add_special_tokens=False)


def test_action_score_sum_is_the_mean_times_the_length(policy: HFPolicy) -> None:
    prompts = _prompts(policy)
    cands = [[policy.action_ids(a) for a in row] for row in ACTIONS]
    lengths = torch.tensor([len(c) for row in cands for c in row], dtype=torch.float32)
    with torch.no_grad():
        mean = candidate_scores(policy.model, prompts, cands, policy.pad_id)
        total = candidate_scores(policy.model, prompts, cands, policy.pad_id, reduce="sum")
        packed = packed_candidate_scores(policy.model, prompts, cands, policy.pad_id, reduce="sum")
        upd = update_candidate_scores(policy.model, prompts, cands, policy.pad_id, reduce="sum")
    torch.testing.assert_close(total, mean * lengths, atol=1e-5, rtol=0)
    torch.testing.assert_close(packed, total, atol=1e-4, rtol=0)
    torch.testing.assert_close(upd, total, atol=1e-4, rtol=0)
    assert not torch.allclose(total, mean)  # the candidates differ in length
    with pytest.raises(ValueError, match=r"policy\.action_score"):
        candidate_scores(policy.model, prompts, cands, policy.pad_id, reduce="max")


def test_sum_scored_choice_records_match_the_update(policy: HFPolicy) -> None:
    summed = HFPolicy(policy.model, policy.tokenizer, action_score="sum")
    prompts = _prompts(policy)
    recs = summed.choose(prompts, ACTIONS, greedy=True)
    for p, row, r in zip(prompts, ACTIONS, recs, strict=True):
        lengths = torch.tensor([len(policy.action_ids(a)) for a in row], dtype=torch.float32)
        assert r.index == int((_naive_scores(policy, p, row) * lengths).argmax())
    again = summed.unit_logprobs(recs)
    torch.testing.assert_close(again.detach(), torch.tensor([r.logprobs[0] for r in recs]))
    with pytest.raises(ConfigError, match=r"policy\.action_score"):
        HFPolicy(policy.model, policy.tokenizer, action_score="max")


def test_first_line_parser_on_small_model_outputs() -> None:
    # what a small chat model answers after a one-shot example (generate mode, first_line)
    assert parse_first_line(" take coin") == "take coin"
    assert parse_first_line("go north\n\nI went north because the task says so.") == "go north"
    assert parse_first_line("\n\n") is None
    assert parse_first_line("") is None
