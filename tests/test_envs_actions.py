"""Actions are sanitised at the env boundary (``slea.envs.base``): control characters and lone
surrogates are refused for every env and never reach a game engine; any str is safe to step.

Before this, ``"x\\x11"`` (and every byte 0x0E-0x15) segfaulted Jericho's frotz under
slea/TextWorld-v0 and ``"\\x00"`` hung it, so an untrained model in generate mode killed training.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import hypothesis.strategies as st
import pytest
from conftest_envs import ALFWORLD_DATA, coin_games, play
from hypothesis import HealthCheck, given, settings

from slea.envs.base import ACTION_STRIP, sanitize_action

#: Every C0 control, DEL and every C1 control.
CONTROL = [chr(c) for c in (*range(0x00, 0x20), *range(0x7F, 0xA0))]
SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]
ENV_NAMES = ["sokoban", "textworld", "alfworld"]


def make_env(name: str) -> Any:
    if name == "sokoban":
        from slea.envs.sokoban import SokobanEnv

        return SokobanEnv(num_levels=20)
    if name == "textworld":
        pytest.importorskip("textworld")
        from slea.envs.textworld import TextWorldEnv

        return TextWorldEnv(coin_games()["train"])
    pytest.importorskip("fast_downward")
    from slea.envs.alfworld import ALFWorldEnv

    return ALFWorldEnv(ALFWORLD_DATA, split="train")


@pytest.fixture(scope="module", params=ENV_NAMES)
def env(request: pytest.FixtureRequest) -> Any:
    e = make_env(request.param)
    yield e
    e.close()


def refused_forms(ch: str) -> list[str]:
    """Actions holding ``ch`` where stripping the ends cannot remove it."""
    forms = [f"x{ch}x", f"go {ch} east", f"take{ch}coin"]
    if ch not in ACTION_STRIP:
        forms += [ch, f"x{ch}", f"{ch}look", ch * 3]
    return forms


def test_sanitize_action() -> None:
    assert sanitize_action("  go east\n") == "go east"
    assert sanitize_action("\t\r\nlook \x0b\x0c") == "look"
    assert sanitize_action(" \n ") == ""
    other = "é ü 日本 \u2028 \ufeff \U0001f600"  # not control characters: passed on
    assert sanitize_action(f" {other}\n") == other
    for ch in CONTROL + SURROGATES:
        for action in refused_forms(ch):
            assert sanitize_action(action) is None, repr(action)
    for c in (0x20, 0x7E, 0xA0, 0xD7FF, 0xE000, 0x10FFFF):
        assert sanitize_action(f"x{chr(c)}x") == f"x{chr(c)}x"


@pytest.mark.timeout(300, method="thread")
def test_control_characters_are_refused_and_the_game_goes_on(env: Any) -> None:
    _, info = env.reset(options={"task_id": 0})
    start = info["state_key"]
    for ch in CONTROL + SURROGATES:
        for action in refused_forms(ch):
            obs, reward, terminated, truncated, info = env.step(action)
            assert info["invalid_action"] is True, repr(action)
            assert obs.startswith(env.refused_action_feedback), repr(action)
            assert reward == 0.0 and not terminated and not truncated
            assert info["state_key"] == start and info["admissible_actions"]
    total, terminated, last = play(env, info["walkthrough"])
    assert terminated and last["won"] and total == 1.0


def test_surrounding_whitespace_is_stripped_not_refused(env: Any) -> None:
    _, info = env.reset(options={"task_id": 0})
    action = info["admissible_actions"][0]
    _, _, _, _, after = env.step(f" \t{action}\r\n")
    assert after["invalid_action"] is False


# The crash itself, in a child process: before the fix it died with SIGSEGV (returncode -11) on
# the first action and hung on "\x00".
_CRASH_SCRIPT = textwrap.dedent(
    """
    import sys
    from slea.envs.textworld import TextWorldEnv
    env = TextWorldEnv(sys.argv[1:])
    _, info = env.reset(options={"task_id": 0})
    for action in ["x\\x11", *(f"x{chr(c)}" for c in range(0x0E, 0x16)), "\\x00", "go\\x00"]:
        obs, _, _, _, step_info = env.step(action)
        assert step_info["invalid_action"], action
    for action in info["walkthrough"]:
        *_, step_info = env.step(action)
    print("won" if step_info["won"] else "lost")
    """
)


@pytest.mark.timeout(300, method="thread")
def test_textworld_interpreter_never_sees_crashing_bytes() -> None:
    pytest.importorskip("textworld")
    games = [str(g) for g in coin_games()["train"]]
    try:
        out = subprocess.run(
            [sys.executable, "-c", _CRASH_SCRIPT, *games],
            capture_output=True,
            text=True,
            timeout=120,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the TextWorld env hung on a control character")
    assert out.returncode == 0, f"returncode {out.returncode} (-11: SIGSEGV)\n{out.stderr[-2000:]}"
    assert out.stdout.strip() == "won"


# Words the games know, the characters that broke them, and any other character.
_PIECES = st.one_of(
    st.sampled_from(["go", "east", "north", "take", "coin", "look", "up", "left", "open", "door"]),
    st.sampled_from([*CONTROL, *SURROGATES, "\\", " ", ".", ";", "restart", "\\help"]),
    st.characters(exclude_categories=()),
)
ACTIONS = st.one_of(
    st.lists(_PIECES, max_size=8).map(" ".join),
    st.lists(_PIECES, max_size=8).map("".join),
)


@pytest.mark.timeout(600, method="thread")
@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.differing_executors])
@given(action=ACTIONS)
def test_any_str_action_is_feedback_and_the_env_stays_usable(env: Any, action: str) -> None:
    if env._done:
        env.reset(options={"task_id": 1})
    obs, reward, terminated, truncated, info = env.step(action)
    assert isinstance(obs, str) and isinstance(reward, float)
    assert isinstance(terminated, bool) and truncated is False
    if sanitize_action(action) is None:
        assert info["invalid_action"] and obs.startswith(env.refused_action_feedback)
    if terminated:
        return
    valid = info["admissible_actions"][0]
    *_, after = env.step(valid)  # the env still plays
    assert after["invalid_action"] is False


@settings(suppress_health_check=[HealthCheck.differing_executors])
@given(action=st.one_of(st.none(), st.integers(), st.binary(), st.lists(st.text(max_size=3))))
def test_non_str_action_is_type_error(env: Any, action: Any) -> None:
    if env._done:
        env.reset(options={"task_id": 1})
    with pytest.raises(TypeError, match="action must be a str"):
        env.step(action)
