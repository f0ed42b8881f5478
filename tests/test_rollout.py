"""Rollouts: lock-step collection, per-step retrieval in the prompt, token-exact rows, prompt builder."""

from __future__ import annotations

import dataclasses
import zlib
from dataclasses import dataclass

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from slea.engine import ActionRecord, Engine, Learner  # noqa: E402
from slea.experience.prompt import (  # noqa: E402
    Turn,
    build_prompt,
    render_experiences,
    system_message,
    user_message,
)
from slea.policy.hf import HFPolicy  # noqa: E402
from slea.policy.tiny import TinyModelSpec, tiny_policy  # noqa: E402
from slea.rollout import EpisodeSpec, PromptSettings, collect  # noqa: E402

# ---------------------------------------------------------------------------- test doubles


class Corridor:
    """Rooms 0..length; win by reaching the last room. Actions: go east, go west, look."""

    def __init__(self, length: int) -> None:
        self.length, self.room, self.done = length, 0, True

    def obs(self, feedback: str = "") -> str:
        return f"{feedback}You are in room {self.room}. Exits lead east and west.".strip()

    def info(self, invalid: bool = False) -> dict:
        return {
            "task": f"Reach room {self.length}.",
            "admissible_actions": ["go east", "go west", "look"],
            "won": self.room == self.length,
            "invalid_action": invalid,
        }


class FakeVec:
    """The SleaVectorEnv contract on Corridor games: no autoreset, ended envs ignore actions."""

    def __init__(self, num_envs: int) -> None:
        self.num_envs = num_envs
        self.envs = [Corridor(2) for _ in range(num_envs)]
        self.steps_taken = 0

    @staticmethod
    def _batch(infos: list[dict]) -> dict:
        keys = {k for d in infos for k in d}
        out: dict = {}
        for k in keys:
            out[k] = np.array([d.get(k) for d in infos], dtype=object)
            out[f"_{k}"] = np.array([k in d for d in infos])
        return out

    def reset(self, seed=None, options=None):
        opts = options["env_options"]
        mask = options.get("reset_mask", [True] * self.num_envs)
        infos = []
        for env, o, m in zip(self.envs, opts, mask, strict=True):
            if m:
                env.length, env.room, env.done = o["length"], 0, False
            infos.append(env.info() if m else {})
        return tuple(e.obs() for e in self.envs), self._batch(infos)

    def set_idle(self, indices):
        for i in indices:
            self.envs[i].done = True

    def step(self, actions):
        obs, rew, term, trunc, infos = [], [], [], [], []
        for env, a in zip(self.envs, actions, strict=True):
            if env.done:
                obs.append(env.obs())
                rew.append(0.0)
                term.append(False)
                trunc.append(False)
                infos.append({})
                continue
            self.steps_taken += 1
            invalid = a not in ("go east", "go west", "look")
            if a == "go east":
                env.room += 1
            elif a == "go west":
                env.room = max(0, env.room - 1)
            won = env.room == env.length
            env.done = won
            obs.append(env.obs("Moved. " if a.startswith("go") else ""))
            rew.append(1.0 if won else 0.0)
            term.append(won)
            trunc.append(False)
            infos.append(env.info(invalid))
        return tuple(obs), np.array(rew), np.array(term), np.array(trunc), self._batch(infos)


class DictClusterer:
    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def assign_batch(self, texts):
        return np.array([self.ids.setdefault(t, len(self.ids)) for t in texts], dtype=np.uint64)


@dataclass(frozen=True)
class Exp:
    id: int
    text: str
    zone: str
    level: str = "pattern"
    observation: str | None = None
    action: str | None = None


def key(text: str) -> int:
    return zlib.crc32(text.encode())


TEXTS = [
    "You are in room 1. Exits lead east and west.",
    "Reach room 3.",
    "go east",
    "go west",
    "look",
    "Tips: keep moving east",
] * 10
SPEC = TinyModelSpec(
    vocab_size=320, hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2
)


@pytest.fixture(scope="module")
def policy() -> HFPolicy:
    return tiny_policy(TEXTS, SPEC, seed=0, mode="choice")


SETTINGS = PromptSettings(rules="Play the corridor game.", history_window=2, max_prompt_tokens=400)
SPECS = [
    EpisodeSpec(group=g, options={"length": 1 + g}, task_id=f"t{g}")
    for g in range(3)
    for _ in range(2)
]


def _collect(policy, venv=None, **kw):
    venv = venv or FakeVec(6)
    kw.setdefault("generator", torch.Generator().manual_seed(0))
    kw.setdefault("prompt", SETTINGS)
    return collect(
        policy,
        venv,
        SPECS,
        max_steps=6,
        clusterer=DictClusterer(),
        anchor_fn=key,
        action_key_fn=key,
        first_episode_id=100,
        **kw,
    )


# ---------------------------------------------------------------------------- tests


def test_lock_step_and_finished_episodes_stop(policy: HFPolicy, monkeypatch) -> None:
    sizes: list[int] = []
    real = policy.act

    def spy(prompts, admissible=None, **kw):
        sizes.append(len(prompts))
        return real(prompts, admissible, **kw)

    monkeypatch.setattr(policy, "act", spy)
    venv = FakeVec(6)
    ro = _collect(policy, venv)
    assert sizes[0] == 6 and sizes == sorted(sizes, reverse=True)  # one call per step, shrinking
    assert sum(sizes) == len(ro) == venv.steps_taken  # ended episodes are not stepped again
    assert len(sizes) == max(len(e) for e in ro.episodes)
    for e in ro.episodes:
        assert e.won == (e.steps[-1].reward == 1.0)
        assert e.truncated == (not e.won and len(e) == 6)


def test_rows_are_ordered_and_consistent(policy: HFPolicy) -> None:
    ro = _collect(policy)
    assert [e.episode_id for e in ro.episodes] == list(range(100, 106))
    assert [e.group for e in ro.episodes] == [0, 0, 1, 1, 2, 2]
    row = 0
    for e in ro.episodes:
        for j, s in enumerate(e.steps):
            assert (
                ro.episode[row] == e.episode_id and ro.step[row] == j and ro.group[row] == e.group
            )
            assert ro.records[row].text == s.action and ro.reward[row] == s.reward
            assert ro.anchor[row] == key(s.observation) and ro.action_key[row] == key(s.action)
            assert ro.cluster[row] == s.cluster_id
            row += 1
    assert row == len(ro) and ro.cluster.dtype == np.uint64 and ro.reward.dtype == np.float32
    assert set(ro.timing) >= {"env", "clustering", "retrieval", "prompt", "generation"}
    st = ro.stats()
    assert st["episodes"] == 6 and st["steps"] == len(ro) and st["retrieval_fraction"] == 0.0


def test_rollout_records_are_token_exact(policy: HFPolicy) -> None:
    ro = _collect(policy)
    stored = torch.tensor([r.logprobs[0] for r in ro.records])
    torch.testing.assert_close(policy.unit_logprobs(ro.records).detach(), stored, atol=1e-5, rtol=0)


def test_greedy_rollouts_are_deterministic(policy: HFPolicy) -> None:
    a, b = _collect(policy, greedy=True), _collect(policy, greedy=True)
    assert [r.text for r in a.records] == [r.text for r in b.records]


def test_retrieved_experiences_reach_the_system_message(policy: HFPolicy, monkeypatch) -> None:
    seen: list[str] = []
    real = policy.encode_prompt

    def spy(messages):
        seen.append(messages[0]["content"])
        return real(messages)

    monkeypatch.setattr(policy, "encode_prompt", spy)
    exps = [Exp(7, "keep moving east", "strategy"), Exp(9, "walking west wastes steps", "warning")]
    calls = []

    def retrieve(clusters, texts):
        calls.append((list(clusters), list(texts)))
        return [exps for _ in texts]

    ro = _collect(policy, retrieve=retrieve)
    assert all(r == (7, 9) for r in ro.retrieved)
    assert all(
        "Tips:\n- keep moving east" in s and "Avoid:\n- walking west wastes steps" in s
        for s in seen
    )
    assert sum(len(c[0]) for c in calls) == len(ro)
    assert ro.stats()["retrieval_fraction"] == 1.0


def test_task_level_retrieval_retrieves_once_per_episode(policy: HFPolicy) -> None:
    calls: list[tuple[list[int], list[str]]] = []

    def retrieve(clusters, texts):
        calls.append((list(clusters), list(texts)))
        # a different experience at every call: a step that re-retrieved would show a new id
        base = 10 * len(calls)
        return [[Exp(base + k, f"tip {base + k}", "strategy")] for k in range(len(texts))]

    ro = _collect(policy, retrieve=retrieve, retrieve_once=True)
    # one call, at the first step, for every episode; later steps reuse what it gave
    assert len(calls) == 1 and len(calls[0][0]) == len(SPECS)
    rows, shown_per_episode = 0, []
    for episode in ro.episodes:  # rows are ordered by episode, then step
        shown = ro.retrieved[rows : rows + len(episode)]
        rows += len(episode)
        assert len(set(shown)) == 1 and len(shown[0]) == 1
        shown_per_episode.append(shown[0])
    assert rows == len(ro) > len(SPECS)
    assert len(set(shown_per_episode)) == len(SPECS)
    # step level on the same rollout retrieves at every step
    calls.clear()
    per_step = _collect(policy, retrieve=retrieve)
    assert sum(len(c[0]) for c in calls) == len(per_step) > len(SPECS)


def test_empty_library_gives_the_plain_grpo_prompts(policy: HFPolicy, monkeypatch) -> None:
    def prompts_of(**kw):
        seen = []
        real = policy.encode_prompt
        monkeypatch.setattr(policy, "encode_prompt", lambda m: seen.append(real(m)) or seen[-1])
        _collect(policy, greedy=True, **kw)
        monkeypatch.setattr(policy, "encode_prompt", real)
        return seen

    plain = prompts_of()
    empty = prompts_of(retrieve=lambda clusters, texts: [[] for _ in texts])
    assert plain == empty and len(plain) > 6


def test_generate_mode_marks_unparsable_actions_invalid(policy: HFPolicy) -> None:
    gen = HFPolicy(
        policy.model, policy.tokenizer, mode="generate", max_new_tokens=3, parser=lambda t: None
    )
    ro = _collect(gen)
    assert ro.invalid.all() and all(r.text == "" for r in ro.records)
    assert all(len(e) == 6 and e.truncated for e in ro.episodes)


def test_envs_without_an_episode_stay_idle(policy: HFPolicy) -> None:
    venv = FakeVec(8)
    venv.envs[7].done = False  # an episode left running by an earlier, truncated collection
    ro = _collect(policy, venv)
    assert len(ro.episodes) == 6 and all(r.text for r in ro.records)
    assert venv.steps_taken == len(ro)  # the two spare envs were never stepped


def test_show_admissible_lists_the_actions_of_the_step(policy: HFPolicy) -> None:
    ro = _collect(policy, prompt=dataclasses.replace(SETTINGS, show_admissible=True))
    for rec, adm in zip(
        ro.records, (s.admissible for e in ro.episodes for s in e.steps), strict=True
    ):
        text = policy.tokenizer.decode(list(rec.prompt_ids)).lower()
        assert text[text.rindex("actions:") :].split("\n")[0] == "actions: " + " | ".join(adm)


def test_the_rollout_needs_only_the_engine_protocol(policy: HFPolicy) -> None:
    class Echo:  # an engine that is not an HFPolicy: always the first admissible action
        mode = "choice"
        version = 0

        def encode_prompt(self, messages):
            return [len(m["content"]) % 97 for m in messages]

        def count_tokens(self, text):
            return len(text.split())

        def act(self, prompts, admissible=None, *, greedy=False, generator=None):
            assert admissible is not None and len(admissible) == len(prompts)
            return [
                ActionRecord(tuple(p), (1,), (0.0,), candidates=((1,),), index=0, text=a[0])
                for p, a in zip(prompts, admissible, strict=True)
            ]

        def sync(self, learner, version):
            self.version = version

    engine = Echo()
    assert isinstance(engine, Engine) and isinstance(policy, Engine)
    ro = _collect(engine)
    assert {r.text for r in ro.records} == {"go east"} and all(e.won for e in ro.episodes)


def test_in_process_engine_sync_records_the_version(policy: HFPolicy) -> None:
    fresh = HFPolicy(policy.model, policy.tokenizer)
    assert isinstance(fresh, Learner) and fresh.version == 0
    fresh.sync(fresh, 3)
    assert fresh.version == 3
    with pytest.raises(ValueError, match="older than the current 3"):
        fresh.sync(fresh, 2)
    with pytest.raises(ValueError, match="learner: an HFPolicy acts with its own weights"):
        fresh.sync(policy, 4)
    assert fresh.version == 3


def test_bad_batch_size(policy: HFPolicy) -> None:
    with pytest.raises(ValueError, match="between 1 and 4"):
        _collect(policy, FakeVec(4))


# ---------------------------------------------------------------------------- prompt builder


def _count(text: str) -> int:
    return len(text.split())


def test_experience_block_respects_the_budget_and_alternates_zones() -> None:
    exps = [
        Exp(1, "one two three", "strategy"),
        Exp(2, "four five six seven", "strategy"),
        Exp(3, "never do this", "warning"),
    ]
    text, ids = render_experiences(exps, _count, 100)
    assert text == "Tips:\n- one two three\n- four five six seven\nAvoid:\n- never do this"
    assert ids == (1, 2, 3)
    text, ids = render_experiences(exps, _count, 10)  # the first strategy and the warning fit
    assert ids == (1, 3) and _count(text) <= 10
    assert render_experiences(exps, _count, 2) == ("", ())
    assert system_message("rules", [], _count, 200) == ("rules", ())


def test_example_entries_show_a_worked_step() -> None:
    exp = Exp(
        4, "go east when the exit is east", "strategy", "example", "You are in room 1.", "go east"
    )
    text, _ = render_experiences([exp], _count, 100)
    assert (
        text
        == 'Tips:\n- Worked step: when you saw "You are in room 1.", the right action was "go east".'
    )


def test_user_message_and_fitting() -> None:
    msg = user_message(
        "Find the coin.",
        [Turn("go east", "You are in the hall.")],
        "You see a coin.",
        ["take coin"],
    )
    assert (
        msg
        == "Task: Find the coin.\nHistory:\n> go east\nYou are in the hall.\nNow:\nYou see a coin.\nActions: take coin"
    )

    def encode(messages):
        return " ".join(m["content"] for m in messages).split()

    history = [Turn(f"go {i}", "word " * 5) for i in range(10)]
    kw = dict(
        rules="rules",
        experiences=[],
        task="t",
        observation="obs " * 5,
        admissible=None,
        history_window=4,
        history_chars=200,
        budget_tokens=50,
    )
    full = build_prompt(encode, _count, history=history, max_prompt_tokens=1000, **kw)
    assert full.messages[1]["content"].count("> go") == 4  # the window
    short = build_prompt(encode, _count, history=history, max_prompt_tokens=30, **kw)
    assert len(short.ids) <= 30 and "> go 9" in short.messages[1]["content"]  # newest kept
    assert "> go 6" not in short.messages[1]["content"]


def test_experiences_go_before_the_system_message_is_cut() -> None:
    """A prompt that does not fit with its experiences drops them (and says so in ``ids``)
    instead of cutting the start of the system message; only rules, task and actions that
    alone exceed the limit lose the prompt's start."""

    def encode(messages):
        return " ".join(m["content"] for m in messages).split()

    exps = [Exp(1, "tip " * 8, "strategy"), Exp(2, "warn " * 8, "warning")]
    kw = dict(
        rules="rule one two",
        experiences=exps,
        task="t",
        history=[Turn("go east", "word " * 5)],
        observation="obs " * 5,
        admissible=["take coin"],
        history_window=4,
        history_chars=200,
        budget_tokens=50,
    )
    full = build_prompt(encode, _count, max_prompt_tokens=1000, **kw)
    assert full.experience_ids == (1, 2) and "tip" in full.messages[0]["content"]
    cut = build_prompt(encode, _count, max_prompt_tokens=15, **kw)
    assert cut.experience_ids == () and cut.messages[0]["content"] == "rule one two"
    assert len(cut.ids) <= 15 and cut.ids[:3] == ("rule", "one", "two")  # the start is kept
    tight = build_prompt(encode, _count, max_prompt_tokens=6, **kw)  # rules + actions too long
    assert len(tight.ids) == 6 and tight.experience_ids == () and tight.ids[-1] == "coin"


def test_chat_history_format_renders_past_turns_as_turns() -> None:
    def encode(messages):
        return " ".join(m["content"] for m in messages).split()

    history = [Turn(f"go {i}", f"room {i + 1}") for i in range(6)]
    kw = dict(
        rules="rules",
        experiences=[],
        task="find the coin",
        observation="room 6",
        admissible=["go 7", "take coin"],
        history_window=3,
        history_chars=200,
        budget_tokens=50,
        history_format="chat",
    )
    p = build_prompt(encode, _count, history=history, max_prompt_tokens=1000, **kw)
    roles = [m["role"] for m in p.messages]
    assert roles == [
        "system",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
    ]
    assert p.messages[1]["content"] == "Task: find the coin\nroom 3"  # the room before "go 3"
    assert [m["content"] for m in p.messages if m["role"] == "assistant"] == [
        "go 3",
        "go 4",
        "go 5",
    ]
    assert p.messages[3]["content"] == "room 4"
    assert p.messages[-1]["content"] == "room 6\nActions: go 7 | take coin"  # shown once, in full
    # too long: the oldest turns go first, the current observation and the actions stay
    short = build_prompt(encode, _count, history=history, max_prompt_tokens=17, **kw)
    assert len(short.ids) <= 17 and short.messages[-2] == {"role": "assistant", "content": "go 5"}
    assert short.messages[-1]["content"].endswith("take coin")
    # no history: one user message, as the lines format writes it
    first = build_prompt(encode, _count, history=[], max_prompt_tokens=1000, **kw)
    assert [m["role"] for m in first.messages] == ["system", "user"]
    assert (
        first.messages[1]["content"]
        == "Task: find the coin\nNow:\nroom 6\nActions: go 7 | take coin"
    )
    with pytest.raises(ValueError, match=r"prompt\.history_format"):
        build_prompt(
            encode,
            _count,
            history=history,
            max_prompt_tokens=1000,
            **{**kw, "history_format": "xml"},
        )


def test_prompt_example_is_a_worked_exchange_after_the_system_message() -> None:
    def encode(messages):
        return " ".join(m["content"] for m in messages).split()

    kw = dict(
        rules="rules",
        experiences=[],
        task="t",
        observation="room 2",
        admissible=["go east"],
        history_window=2,
        history_chars=50,
        budget_tokens=50,
        example=("You are in a hall.\nActions: go east | look", "go east"),
    )
    history = [Turn("go west", "room 1"), Turn("go north", "room 2")]
    for fmt in ("lines", "chat"):
        p = build_prompt(
            encode, _count, history=history, max_prompt_tokens=1000, history_format=fmt, **kw
        )
        assert [m["role"] for m in p.messages[:4]] == ["system", "user", "assistant", "user"]
        assert p.messages[2]["content"] == "go east"
        assert p.messages[-1]["content"].endswith("Actions: go east")
        # the example is kept while history is dropped to fit
        short = build_prompt(
            encode, _count, history=history, max_prompt_tokens=20, history_format=fmt, **kw
        )
        assert short.messages[2]["content"] == "go east" and "go west" not in str(short.messages)
    with pytest.raises(ValueError, match=r"prompt\.example"):
        build_prompt(
            encode, _count, history=history, max_prompt_tokens=1000, **{**kw, "example": ("x",)}
        )
