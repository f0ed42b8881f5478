"""slea.wrappers.ExperienceRetrieval: info at reset and every step, budgets, bad input, examples."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import given
from hypothesis import strategies as st

import slea
from slea.experience.prompt import DEFAULT_RULES
from slea.wrappers import ExperienceRetrieval, approx_token_count, token_counter

ROOT = Path(__file__).resolve().parents[1]


class EchoEnv(gymnasium.Env[str, str]):
    """A text env whose observation is the last action (the start text at reset)."""

    observation_space = spaces.Text(200)
    action_space = spaces.Text(200)

    def __init__(self, start: str = "You are in a kitchen. You see an apple.") -> None:
        self.start = start

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.start, {"task": "eat"}

    def step(self, action):
        return action, 0.0, action == "stop", False, {"task": "eat"}


class BoxEnv(gymnasium.Env):
    observation_space = spaces.Box(0.0, 1.0, (3,))
    action_space = spaces.Discrete(2)


class ArrayObsEnv(EchoEnv):
    """Declares a text space but returns arrays: caught at the first observation."""

    def reset(self, *, seed=None, options=None):
        return np.zeros(3), {}


def _library(cluster_text: str, *, texts=("Eat the apple first.",)) -> slea.ExperienceLibrary:
    lib = slea.ExperienceLibrary()
    cid = slea.ObservationClusterer().assign(cluster_text)
    cands = [slea.Candidate(t, "strategy", "principle", 1.0, cluster_ids=(cid,)) for t in texts]
    cands.append(
        slea.Candidate(
            "Do not throw the apple away.", "warning", "pattern", 0.0, cluster_ids=(cid,)
        )
    )
    report = lib.admit(cands, iteration=1)
    assert report.summary()["admitted"] == len(cands)
    return lib


def test_reset_and_step_put_the_experiences_of_each_observation_in_info() -> None:
    env = EchoEnv()
    lib = _library(env.start)
    w = ExperienceRetrieval(env, lib, slea.ObservationClusterer(), system_message=True)
    _, info = w.reset(seed=0)
    assert info["task"] == "eat"  # the env's own keys are kept
    assert info["cluster_id"] == slea.ObservationClusterer().assign(env.start)
    assert [(e["text"], e["zone"], e["level"]) for e in info["experiences"]] == [
        ("Eat the apple first.", "strategy", "principle"),
        ("Do not throw the apple away.", "warning", "pattern"),
    ]
    assert {e["id"] for e in info["experiences"]} == set(w.episode_experience_ids)
    assert info["system_message"] == (
        f"{DEFAULT_RULES}\n\nTips:\n- Eat the apple first.\nAvoid:\n- Do not throw the apple away."
    )
    # a step to an unrelated observation: no pool, fallback finds nothing similar
    _, _, _, _, info = w.step("zzzz qqqq")
    assert info["experiences"] == [] and info["system_message"] == DEFAULT_RULES
    # back to the start text: the same entries again
    _, _, _, _, info = w.step(env.start)
    assert len(info["experiences"]) == 2
    w.reset()
    assert len(w.episode_experience_ids) == 2  # reset starts a new episode's set


def test_without_system_message_there_is_no_such_key() -> None:
    env = EchoEnv()
    w = ExperienceRetrieval(env, _library(env.start), slea.ObservationClusterer())
    _, info = w.reset()
    assert "system_message" not in info and len(info["experiences"]) == 2


def test_the_budget_keeps_what_fits_and_the_tokenizer_counts() -> None:
    env = EchoEnv()
    long = "Eat the apple first, then look around the kitchen for anything else worth eating."
    lib = _library(env.start, texts=(long,))
    counts = {}
    for budget in (12, 30, 200):
        w = ExperienceRetrieval(env, lib, slea.ObservationClusterer(), budget_tokens=budget)
        _, info = w.reset()
        counts[budget] = [e["zone"] for e in info["experiences"]]
    # "Avoid:\n- Do not throw the apple away." is 10 approximate tokens; the long tip is 25
    assert counts == {12: ["warning"], 30: ["strategy"], 200: ["strategy", "warning"]}
    # a word counter: 7 words for the warning block, 17 for the tip block
    words = ExperienceRetrieval(
        env, lib, slea.ObservationClusterer(), budget_tokens=8, tokenizer=lambda s: len(s.split())
    )
    assert [e["zone"] for e in words.reset()[1]["experiences"]] == ["warning"]


def test_a_clusterer_with_only_assign_batch_works() -> None:
    class BatchOnly:
        def __init__(self) -> None:
            self.inner = slea.ObservationClusterer()

        def assign_batch(self, texts):
            return self.inner.assign_batch(texts)

    env = EchoEnv()
    w = ExperienceRetrieval(env, _library(env.start), BatchOnly())
    assert len(w.reset()[1]["experiences"]) == 2


def test_token_counter_accepts_hf_style_tokenizers() -> None:
    class Encoding:
        def __init__(self, ids):
            self.ids = ids

    class FastTokenizer:  # tokenizers.Tokenizer: encode -> Encoding, takes add_special_tokens
        def encode(self, text, add_special_tokens=True):
            return Encoding(list(range(len(text.split()) + (2 if add_special_tokens else 0))))

    class Plain:  # encode(text) only
        def encode(self, text):
            return text.split()

    assert token_counter(FastTokenizer())("a b c") == 3  # no special tokens counted
    assert token_counter(Plain())("a b c") == 3
    assert token_counter(None) is approx_token_count
    assert approx_token_count("") == 0 and approx_token_count("abcde") == 2


def test_gymnasium_sokoban_runs_wrapped() -> None:
    env = gymnasium.make("slea/Sokoban-v0", max_episode_steps=3)
    lib = slea.ExperienceLibrary()
    w = ExperienceRetrieval(env, lib, slea.ObservationClusterer())
    _, info = w.reset(seed=0)
    assert info["experiences"] == [] and "admissible_actions" in info
    for _ in range(3):
        _, _, term, trunc, info = w.step("up")
        assert isinstance(info["cluster_id"], int)
    assert trunc or term


# ---- bad input ------------------------------------------------------------------------------


def test_a_non_text_env_is_refused_naming_env() -> None:
    with pytest.raises(TypeError, match=r"env: .*text env.*Box"):
        ExperienceRetrieval(BoxEnv(), slea.ExperienceLibrary(), slea.ObservationClusterer())
    with pytest.raises(TypeError, match=r"env: expected a gymnasium\.Env"):
        ExperienceRetrieval(object(), slea.ExperienceLibrary(), slea.ObservationClusterer())  # type: ignore[arg-type]
    w = ExperienceRetrieval(ArrayObsEnv(), slea.ExperienceLibrary(), slea.ObservationClusterer())
    with pytest.raises(TypeError, match="env: observations must be str"):
        w.reset()


def test_an_embedding_dimension_mismatch_is_refused_naming_the_argument() -> None:
    lib = slea.ExperienceLibrary(embedder=slea.HashingEmbedder(64))
    with pytest.raises(ValueError, match=r"embedder: gives 128-dimensional .*\(64 dimensions\)"):
        ExperienceRetrieval(
            EchoEnv(), lib, slea.ObservationClusterer(), embedder=slea.HashingEmbedder(128)
        )
    lib.embedder = slea.HashingEmbedder(32)  # swapped after the index was built
    with pytest.raises(ValueError, match=r"library: its index holds 64-dimensional"):
        ExperienceRetrieval(EchoEnv(), lib, slea.ObservationClusterer())
    with pytest.raises(TypeError, match=r"library: expected a slea\.ExperienceLibrary"):
        ExperienceRetrieval(EchoEnv(), {}, slea.ObservationClusterer())  # type: ignore[arg-type]


def test_a_budget_below_one_entry_is_refused() -> None:
    env = EchoEnv()
    lib = _library(env.start)
    with pytest.raises(ValueError, match=r"budget_tokens: 5 tokens fit no experience .*needs 7\)"):
        ExperienceRetrieval(env, lib, slea.ObservationClusterer(), budget_tokens=5)
    with pytest.raises(ValueError, match=r"budget_tokens: 0 tokens fit no experience"):
        ExperienceRetrieval(
            env, slea.ExperienceLibrary(), slea.ObservationClusterer(), budget_tokens=0
        )
    with pytest.raises(TypeError, match="budget_tokens: expected an int"):
        ExperienceRetrieval(env, lib, slea.ObservationClusterer(), budget_tokens=10.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "exc", "pattern"),
    [
        ({"clusterer": object()}, TypeError, "clusterer: expected an object with assign"),
        ({"tokenizer": 3}, TypeError, "tokenizer: expected None"),
        ({"tokenizer": lambda s: -1}, TypeError, "tokenizer: a token count must be an int >= 0"),
        ({"tokenizer": lambda s: 1 / 0}, TypeError, "tokenizer: counting the tokens"),
        ({"system_message": "yes"}, TypeError, "system_message: expected a bool"),
        ({"rules": None}, TypeError, "rules: expected a str"),
        ({"k_strategy": -1}, ValueError, "k_strategy: expected None or an int >= 0"),
        ({"k_warning": 1.5}, ValueError, "k_warning: expected None or an int >= 0"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, exc, pattern) -> None:
    args = {"clusterer": slea.ObservationClusterer(), **kwargs}
    with pytest.raises(exc, match=pattern):
        ExperienceRetrieval(EchoEnv(), slea.ExperienceLibrary(), **args)


@given(st.lists(st.text(max_size=80), max_size=6), st.integers(min_value=3, max_value=120))
def test_any_observations_give_experiences_within_the_budget(observations, budget) -> None:
    env = EchoEnv()
    lib = _library(env.start)
    w = ExperienceRetrieval(
        env, lib, slea.ObservationClusterer(), budget_tokens=max(budget, 10), system_message=True
    )
    _, info = w.reset()
    for text in observations:
        _, _, _, _, info = w.step(text)
        block = info["system_message"][len(DEFAULT_RULES) :].strip()
        assert approx_token_count(block) <= max(budget, 10)
        assert {e["id"] for e in info["experiences"]} <= {e.id for e in lib.entries()}


# ---- the example, as a user runs it ------------------------------------------------------------


def _run_example(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(slea.__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]
    )
    return subprocess.run(
        [sys.executable, str(ROOT / "examples" / "retrieval_wrapper_loop.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_the_loop_example_wins_with_the_library_and_not_without() -> None:
    proc = _run_example("--levels", "2", "--episodes", "2", "--max-steps", "40")
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("success: 2/2"), proc.stdout
    proc = _run_example("--levels", "2", "--episodes", "2", "--max-steps", "10", "--no-library")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "success: 0/2" in proc.stdout and "steps with experiences: 0 " in proc.stdout


def test_the_trl_example_runs_grpo_steps_with_retrieval(tmp_path: Path) -> None:
    """TRL's GRPOTrainer with a rollout_func that plays wrapped episodes (tiny model, 2 steps)."""
    pytest.importorskip("trl", reason="the TRL example needs trl (in the [test] extra)")
    pytest.importorskip("torch", reason="the TRL example needs the [train] extra")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(slea.__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]
    )
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "retrieval_wrapper_trl.py"),
            "--steps",
            "2",
            "--max-turns",
            "2",
            "--out",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("done: 2 steps"), proc.stdout[-2000:]
    assert "experience ids shown [1, 2]" in last  # the system messages carried both lessons


def test_a_broken_library_embedder_is_refused_naming_library() -> None:
    class Broken:
        dim, name = 64, "broken"

        def embed(self, texts):
            return np.zeros((len(texts), 3), dtype=np.float32)

    lib = slea.ExperienceLibrary(embedder=slea.HashingEmbedder(64))
    lib.embedder = Broken()
    with pytest.raises(ValueError, match=r"library: its embedder does not work: .*\(1, 3\)"):
        ExperienceRetrieval(EchoEnv(), lib, slea.ObservationClusterer())
