"""The server engine against `slea serve` and against scripted faulty servers: token-exact
records, log-probs that agree with the learner's, LoRA sync, retries, truncated episodes, errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")

from starlette.applications import Starlette  # noqa: E402
from starlette.responses import JSONResponse, PlainTextResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from slea.algo.update import recompute_old_logprobs  # noqa: E402
from slea.engine import ActionRecord, Engine  # noqa: E402
from slea.errors import ConfigError, EngineError  # noqa: E402
from slea.policy.hf import HFPolicy, LoraSpec  # noqa: E402
from slea.policy.server import ServerEngine, check_adapter  # noqa: E402
from slea.policy.tiny import TinyModelSpec, build_tiny  # noqa: E402
from slea.serve import ModelServer, ServerThread, create_app  # noqa: E402

TEXTS = ["you are in a room. exits lead east and west. <action>go east</action> take coin"] * 40
SPEC = TinyModelSpec(
    vocab_size=300, hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2
)
# generous timeouts: the fast suite runs on 2 busy cores (a 2 s connect timeout once failed there)
FAST = dict(retries=2, backoff_s=0.01, connect_timeout_s=15.0, timeout_s=60.0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("engine") / "tiny", TEXTS, SPEC)


@pytest.fixture(scope="module")
def serving(model_dir: Path):
    server = ModelServer(model_dir, name="tiny")
    with ServerThread(create_app(server)) as thread:
        yield server, thread.url


@pytest.fixture()
def served(serving):
    """The module's server, with no adapter loaded before and after the test."""
    server, _ = serving
    yield serving
    for name in list(server.adapters):
        server.unload_adapter(name)


def learner(model_dir: Path, **kw: Any) -> HFPolicy:
    kw.setdefault("max_new_tokens", 10)
    return HFPolicy.from_pretrained(model_dir, lora=LoraSpec(r=4), mode="generate", **kw)


def perturb(policy: HFPolicy, seed: int) -> None:
    """Make the LoRA adapter non-zero (as training would)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in policy.trainable_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)


def prompts(policy: HFPolicy, n: int = 6) -> list[list[int]]:
    return [policy.encode_prompt([{"role": "user", "content": f"room {i} east"}]) for i in range(n)]


def test_records_are_token_exact_and_logprobs_agree_with_the_learner(
    served, model_dir, tmp_path
) -> None:
    """Measure (a): slea serve's log-probs and the trainer's recomputed ones agree within 1e-4."""
    _, url = served
    policy = learner(model_dir, temperature=0.8)
    engine = ServerEngine(policy, urls=[url], adapter_dir=tmp_path / "adapters", **FAST)
    try:
        assert (
            isinstance(engine, Engine) and engine.model == "tiny" and engine.max_model_len == 1024
        )
        gaps = []
        for version, seed in ((0, 1), (1, 2), (2, 3)):
            perturb(policy, seed)
            engine.sync(policy, version)
            ps = prompts(policy)
            records = engine.act(ps, generator=torch.Generator().manual_seed(version))
            assert [r.prompt_ids for r in records] == [tuple(p) for p in ps]
            assert all(not r.error and r.num_units == len(r.response_ids) >= 1 for r in records)
            for r in records:
                raw = policy.tokenizer.decode(list(r.response_ids), skip_special_tokens=True)
                assert r.raw_text == raw and r.valid == (policy.parser(raw) is not None)
            again, gap = recompute_old_logprobs(policy, records, batch_size=4)
            assert [a.response_ids for a in again] == [r.response_ids for r in records]
            gaps.append(gap["server_logprob_gap_max"])
        assert max(gaps) < 1e-4, gaps
    finally:
        engine.close()


def test_sync_loads_a_new_adapter_unloads_the_old_and_prunes_files(
    served, model_dir, tmp_path
) -> None:
    server, url = served
    policy = learner(model_dir)
    engine = ServerEngine(policy, urls=[url], adapter_dir=tmp_path / "adapters", **FAST)
    try:
        for k in range(4):
            perturb(policy, k)
            engine.sync(policy, k)
            name = engine._served_name()
            assert name.endswith(f"-v{k}") and list(server.adapters) == [name]
        assert engine.version == 3
        assert sorted(p.name for p in (tmp_path / "adapters").iterdir()) == ["v3"]
        assert not any(p.name.startswith(".") for p in (tmp_path / "adapters").iterdir())
        with pytest.raises(ValueError, match="older than the current 3"):
            engine.sync(policy, 2)
        # the records come from the version-3 adapter: the learner scores them the same
        recs = engine.act(prompts(policy, 2), generator=torch.Generator().manual_seed(0))
        assert recompute_old_logprobs(policy, recs)[1]["server_logprob_gap_max"] < 1e-4
    finally:
        engine.close()


def test_a_restarted_server_gets_the_adapter_again(served, model_dir, tmp_path) -> None:
    server, url = served
    policy = learner(model_dir)
    engine = ServerEngine(policy, urls=[url], adapter_dir=tmp_path / "adapters", **FAST)
    try:
        engine.sync(policy, 1)
        server.unload_adapter(engine._served_name())  # what a server restart does
        records = engine.act(prompts(policy, 2))
        assert all(not r.error for r in records) and engine._served_name() in server.adapters
    finally:
        engine.close()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"r": 64}, "above engine.max_lora_rank=16"),
        ({"use_dora": True}, "DoRA"),
        ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
        ({"bias": "all"}, "bias='all'"),
        ({"peft_type": "IA3"}, "only LORA"),
    ],
)
def test_adapters_a_server_cannot_load_are_refused_before_loading(
    model_dir, tmp_path, change, words
) -> None:
    policy = learner(model_dir)
    policy.model.save_pretrained(str(tmp_path))
    cfg = json.loads((tmp_path / "adapter_config.json").read_text())
    cfg.update(change)
    (tmp_path / "adapter_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match=r"model\.lora_r") as info:
        check_adapter(tmp_path, 16)
    assert words in str(info.value)


def test_construction_errors_name_the_server_and_the_fix(served, model_dir, tmp_path) -> None:
    _, url = served
    policy = learner(model_dir)
    with pytest.raises(
        EngineError, match=r"cannot reach the generation server at http://127\.0\.0\.1:9 "
    ):
        ServerEngine(policy, urls=["http://127.0.0.1:9"], adapter_dir=tmp_path, retries=0)
    with pytest.raises(ConfigError, match=r"engine.model: 'other' is not served .* \['tiny'\]"):
        ServerEngine(policy, urls=[url], adapter_dir=tmp_path, model="other", **FAST)
    chooser = HFPolicy.from_pretrained(model_dir, mode="choice")
    with pytest.raises(ConfigError, match="generate mode only"):
        ServerEngine(chooser, urls=[url], adapter_dir=tmp_path)
    full = HFPolicy.from_pretrained(model_dir, mode="generate")
    engine = ServerEngine(full, urls=[url], adapter_dir=tmp_path, **FAST)
    try:
        with pytest.raises(ConfigError, match=r"model\.lora_r: .* LoRA adapter"):
            engine.sync(full, 1)
        assert engine.version == 0 and not any(tmp_path.iterdir())
    finally:
        engine.close()


# ---------------------------------------------------------------------------- scripted servers


class Script:
    """A fake vLLM: /v1/models lists `tiny`; completions answer by ``reply(body, count)``."""

    def __init__(
        self, reply: Callable[[dict, int], Any], load: Callable[[dict], Any] | None = None
    ):
        self.reply, self.load, self.count, self.loads = reply, load, 0, []

    def app(self) -> Starlette:
        async def models(request):
            return JSONResponse({"data": [{"id": "tiny", "max_model_len": 1024}]})

        async def completions(request):
            self.count += 1
            return self.reply(await request.json(), self.count)

        async def load(request):
            body = await request.json()
            self.loads.append(body)
            return self.load(body) if self.load else PlainTextResponse("Success")

        async def unload(request):
            return PlainTextResponse("Success")

        return Starlette(
            routes=[
                Route("/v1/models", models),
                Route("/v1/completions", completions, methods=["POST"]),
                Route("/v1/load_lora_adapter", load, methods=["POST"]),
                Route("/v1/unload_lora_adapter", unload, methods=["POST"]),
            ]
        )


def good(body: dict, count: int = 0) -> JSONResponse:
    ids = [7, 8]
    choice = {
        "index": 0,
        "text": "",
        "token_ids": ids,
        "prompt_token_ids": body["prompt"],
        "logprobs": {"token_logprobs": [-1.0, -2.0], "tokens": ["a", "b"]},
        "finish_reason": "length",
    }
    return JSONResponse({"choices": [choice]})


def unavailable(body: dict, count: int = 0) -> JSONResponse:
    return JSONResponse({"error": {"message": "overloaded", "code": 503}}, status_code=503)


def run_script(model_dir: Path, tmp_path: Path, script: Script, n: int = 3, lora: bool = False):
    policy = learner(model_dir) if lora else HFPolicy.from_pretrained(model_dir, mode="generate")
    with ServerThread(script.app()) as thread:
        engine = ServerEngine(policy, urls=[thread.url], adapter_dir=tmp_path, **FAST)
        try:
            if lora:
                engine.sync(policy, 1)
            return engine.act(prompts(policy, n))
        finally:
            engine.close()


def test_transient_failures_are_retried(model_dir, tmp_path) -> None:
    script = Script(lambda body, count: unavailable(body) if count <= 2 else good(body))
    records = run_script(model_dir, tmp_path, script)
    assert all(not r.error and r.response_ids == (7, 8) for r in records)
    assert script.count == 5  # two 503s, then three answers


def test_a_server_that_stays_down_gives_error_records_not_an_exception(model_dir, tmp_path) -> None:
    script = Script(unavailable)
    records = run_script(model_dir, tmp_path, script)
    assert script.count == 3 * (FAST["retries"] + 1)
    for r in records:
        assert r.error.startswith("generation server: no answer after 3 tries")
        assert "HTTP 503: overloaded" in r.error
        assert r.num_units == 0 and not r.valid


@pytest.mark.parametrize(
    ("reply", "words"),
    [
        (
            lambda b, c: good({"prompt": [1, *b["prompt"]]}),
            "changed the prompt .* first difference at position 0",
        ),
        (
            lambda b, c: JSONResponse({"choices": [{"index": 0, "text": "x"}]}),
            "return_token_ids: use vLLM >= 0.10.2",
        ),
        (lambda b, c: PlainTextResponse("<html>"), "not JSON"),
        (lambda b, c: JSONResponse({"choices": []}), "expected one choice"),
        (
            lambda b, c: JSONResponse(
                {
                    "choices": [
                        {"token_ids": [1, 2], "prompt_token_ids": b["prompt"], "logprobs": None}
                    ]
                }
            ),
            "one log-prob per token",
        ),
        (
            lambda b, c: JSONResponse({"error": {"message": "The model `x` does not exist."}}, 404),
            "HTTP 404",
        ),
        (lambda b, c: JSONResponse({"error": {"message": "too long"}}, 400), "max_model_len"),
    ],
)
def test_bad_answers_are_engine_errors_naming_server_request_and_fix(
    model_dir, tmp_path, reply, words
) -> None:
    with pytest.raises(EngineError, match=r"POST http://127\.0\.0\.1:\d+/v1/completions") as info:
        run_script(model_dir, tmp_path, Script(reply), n=1)
    assert __import__("re").search(words, str(info.value)), str(info.value)


def test_a_refused_adapter_is_an_engine_error(model_dir, tmp_path) -> None:
    refuse = Script(
        good, load=lambda b: JSONResponse({"error": {"message": "LoRA is disabled"}}, 400)
    )
    with pytest.raises(EngineError, match=r"load_lora_adapter .* LoRA is disabled.*--enable-lora"):
        run_script(model_dir, tmp_path, refuse, lora=True)


def test_no_acting_with_an_adapter_older_than_the_policy(model_dir, tmp_path) -> None:
    """A server that cannot take the new adapter is not asked to act; once it can, it does."""
    down = {"on": False}
    script = Script(
        good, load=lambda b: unavailable(b) if down["on"] else PlainTextResponse("Success")
    )
    policy = learner(model_dir)
    with ServerThread(script.app()) as thread:
        engine = ServerEngine(policy, urls=[thread.url], adapter_dir=tmp_path, **FAST)
        try:
            engine.sync(policy, 1)
            down["on"] = True
            with pytest.warns(UserWarning, match="not loaded yet"):
                engine.sync(policy, 2)
            before = script.count
            with pytest.warns(UserWarning):
                records = engine.act(prompts(policy, 2))
            assert script.count == before  # nobody was asked with the version-1 adapter
            assert all("refusing to act with older weights" in r.error for r in records)
            down["on"] = False
            records = engine.act(prompts(policy, 2))
            assert all(not r.error for r in records)
            assert script.loads[-1]["lora_name"].endswith("-v2")
        finally:
            engine.close()


# ---------------------------------------------------------------------------- rollouts


def test_failed_acts_end_episodes_truncated_and_marked(model_dir) -> None:
    from test_rollout import FakeVec

    from slea.clustering import ObservationClusterer, structural_hash
    from slea.rollout import EpisodeSpec, PromptSettings, collect
    from slea.train.trainer import usable_episodes

    policy = HFPolicy.from_pretrained(model_dir, mode="generate", max_new_tokens=4)

    class FailsEpisodeOne:
        mode = "generate"
        version = 0
        encode_prompt = staticmethod(policy.encode_prompt)
        count_tokens = staticmethod(policy.count_tokens)

        def __init__(self) -> None:
            self.calls = 0

        def act(self, ps, admissible=None, *, greedy=False, generator=None):
            self.calls += 1
            out = [ActionRecord(tuple(p), (5,), (-1.0,), text="go east") for p in ps]
            if self.calls == 2:  # the second step: the first running episode's act fails
                out[0] = ActionRecord(
                    tuple(ps[0]), (), (), valid=False, error="generation server: down"
                )
            return out

        def sync(self, learner, version):
            pass

    venv = FakeVec(3)
    specs = [EpisodeSpec(group=0, options={"length": 4}) for _ in range(3)]
    rollout = collect(
        FailsEpisodeOne(),
        venv,
        specs,
        max_steps=6,
        prompt=PromptSettings(rules="r"),
        clusterer=ObservationClusterer(),
        anchor_fn=structural_hash,
        action_key_fn=structural_hash,
    )
    failed, *others = rollout.episodes
    assert failed.truncated and failed.error == "generation server: down" and len(failed) == 1
    assert all(not e.error and e.won and len(e) == 4 for e in others)
    assert all(not r.error for r in rollout.records) and len(rollout) == 1 + 4 + 4
    assert rollout.stats()["failed_episodes"] == 1
    assert usable_episodes(rollout) == others
    assert np.array_equal(rollout.episode, [0, 1, 1, 1, 1, 2, 2, 2, 2])


# ---------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        (["engine.kind=remote"], "engine.kind: must be one of local, server"),
        (["engine.kind=server"], "engine.url: a server engine needs the server's URL"),
        (
            ["engine.kind=server", "engine.url=localhost:8000"],
            "engine.url: 'localhost:8000' is not",
        ),
        (["engine.concurrency=0"], "engine.concurrency: must be >= 1"),
        (["engine.timeout_s=0"], "engine.timeout_s: must be > 0"),
        (["engine.retries=-1"], "engine.retries: must be >= 0"),
        (["engine.max_lora_rank=0"], "engine.max_lora_rank: must be >= 1"),
        (
            ["engine.kind=server", "engine.url=http://h:1"],
            "engine.kind: a server engine acts in generate mode only",
        ),
        (
            ["engine.kind=server", "engine.url=http://h:1", "policy.mode=generate"],
            "model.lora_r: a server engine takes the trained weights as a LoRA adapter",
        ),
        (
            [
                "engine.kind=server",
                "engine.url=http://h:1",
                "policy.mode=generate",
                "model.lora_r=32",
            ],
            "model.lora_r: 32 is above engine.max_lora_rank=16",
        ),
        (["engine.urls=http://h:1"], "engine.urls: unknown key (did you mean 'url'?)"),
    ],
)
def test_engine_config_errors_name_the_key_and_the_fix(overrides, words) -> None:
    from slea.train.config import TrainConfig

    with pytest.raises(ConfigError) as info:
        TrainConfig.from_dict({}, overrides)
    assert words in str(info.value)


def test_engine_config_defaults_and_a_valid_server_section() -> None:
    from slea.train.config import TrainConfig

    assert TrainConfig().engine.kind == "local"
    cfg = TrainConfig.from_dict(
        {},
        [
            "engine.kind=server",
            "engine.url=[http://a:1, http://b:2]",
            "policy.mode=generate",
            "model.lora_r=8",
        ],
    )
    assert cfg.engine.url == ("http://a:1", "http://b:2")
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    # training-free mode may act through a server without an adapter
    TrainConfig.from_dict(
        {},
        [
            "engine.kind=server",
            "engine.url=http://a:1",
            "policy.mode=generate",
            "train.update_policy=false",
        ],
    )


def test_an_env_error_marks_its_episode_and_keeps_it_from_the_library() -> None:
    """A dead env worker's episode (info["env_error"]) is marked like a failed act, so the
    trainer's evolution skips it (before, it reached the library as an ordinary failure)."""
    from test_rollout import FakeVec

    from slea.clustering import ObservationClusterer, structural_hash
    from slea.rollout import EpisodeSpec, PromptSettings, collect
    from slea.train.trainer import usable_episodes

    class CrashingVec(FakeVec):
        def step(self, actions):
            obs, rew, term, trunc, infos = super().step(actions)
            if self.steps_taken == 2:  # env 0 "crashes" on its first step
                trunc = trunc.copy()
                trunc[0] = True
                infos["env_error"] = np.array(["env 0: worker died", None, None], dtype=object)
                infos["_env_error"] = np.array([True, False, False])
            return obs, rew, term, trunc, infos

    class East:
        mode = "generate"
        version = 0

        def encode_prompt(self, messages):
            return [1, 2, 3]

        def count_tokens(self, text):
            return len(text.split())

        def act(self, ps, admissible=None, *, greedy=False, generator=None):
            return [ActionRecord(tuple(p), (5,), (-1.0,), text="go east") for p in ps]

        def sync(self, learner, version):
            pass

    rollout = collect(
        East(),
        CrashingVec(2),
        [EpisodeSpec(group=0, options={"length": 3}) for _ in range(2)],
        max_steps=5,
        prompt=PromptSettings(rules="r"),
        clusterer=ObservationClusterer(),
        anchor_fn=structural_hash,
        action_key_fn=structural_hash,
    )
    crashed, fine = rollout.episodes
    assert crashed.truncated and crashed.error == "env 0: worker died" and len(crashed) == 1
    assert not fine.error and fine.won
    assert usable_episodes(rollout) == [fine]
