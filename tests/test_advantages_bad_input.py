"""Bad input to StepBatch and compute_advantages: clear errors naming the argument, no panics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import slea

GOOD = {
    "group": [0, 0, 1],
    "episode": [0, 0, 1],
    "step": [0, 1, 0],
    "reward": [0.0, 1.0, 0.5],
    "key": [1, 2, 1],
    "invalid": [False, True, False],
    "action_key": [0, 1, 0],
}


def batch(**changes):
    return slea.StepBatch(**{**GOOD, **changes})


@pytest.mark.parametrize("name", ["episode", "step", "reward", "key", "invalid", "action_key"])
def test_mismatched_lengths_name_the_column(name):
    with pytest.raises(ValueError, match=rf"^{name}: has 2 rows but group has 3"):
        batch(**{name: GOOD[name][:2]})


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_rewards(bad):
    with pytest.raises(ValueError, match=r"^reward: must be finite, row 1 is"):
        batch(reward=[0.0, bad, 1.0])


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("group", [0.0, 0.5, 1.0], TypeError),
        ("episode", ["a", "b", "c"], TypeError),
        ("step", [True, False, True], TypeError),
        ("reward", ["1", "2", "3"], TypeError),
        ("reward", [True, False, True], TypeError),
        ("reward", [1 + 1j, 0, 0], TypeError),
        ("key", [0.5, 1.0, 2.0], TypeError),
        ("key", [object(), 1, 2], TypeError),
        ("invalid", [0.0, 1.0, 0.0], TypeError),
        ("invalid", [0, 2, 1], ValueError),
        ("action_key", ["x", "y", "z"], TypeError),
        ("group", [[0], [0], [1]], ValueError),
        ("reward", np.zeros((3, 2)), ValueError),
        ("episode", 5, ValueError),
        ("group", np.array([2**63, 0, 1], dtype=np.uint64), ValueError),
        ("step", [[0, 1], [2], []], TypeError),
    ],
)
def test_wrong_dtypes_and_shapes_name_the_column(name, value, error):
    with pytest.raises(error, match=rf"^{name}: "):
        batch(**{name: value})


def test_relational_checks():
    with pytest.raises(ValueError, match=r"^group: episode 0 appears in groups 0 and 1"):
        batch(group=[0, 1, 1])
    with pytest.raises(ValueError, match=r"^step: episode 0 has step 1 more than once"):
        batch(step=[1, 1, 0])


def test_integer_flags_and_unsigned_ids_are_accepted():
    b = batch(invalid=[0, 1, 0], group=np.array([3, 3, 4], dtype=np.uint32))
    assert b.invalid.tolist() == [False, True, False]
    assert b.group.dtype == np.int64


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"estimator": "ppo"}, ValueError, r"^estimator: unknown estimator 'ppo'; choose one of"),
        ({"estimator": 3}, TypeError, r"^estimator: expected a str"),
        ({"mode": "std"}, ValueError, r"^mode: unknown mode 'std'"),
        ({"mode": None}, TypeError, r"^mode: expected a str"),
        ({"gamma": -0.5}, ValueError, r"^gamma: must be finite and >= 0.0 and <= 1.0, got -0.5"),
        ({"gamma": 1.5}, ValueError, r"^gamma: "),
        ({"gamma": float("nan")}, ValueError, r"^gamma: "),
        ({"gamma": "0.9"}, TypeError, r"^gamma: expected a real number"),
        ({"gamma": True}, TypeError, r"^gamma: expected a real number"),
        ({"step_weight": float("inf")}, ValueError, r"^step_weight: must be finite"),
        ({"invalid_penalty": -0.1}, ValueError, r"^invalid_penalty: "),
        ({"eps": 0.0}, ValueError, r"^eps: must be finite and > 0.0"),
        ({"eps": -1e-6}, ValueError, r"^eps: "),
    ],
)
def test_bad_parameters_name_the_argument(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        slea.compute_advantages(batch(), **kwargs)


def test_numpy_scalars_are_accepted_as_parameters():
    out = slea.compute_advantages(batch(), gamma=np.float32(0.5), step_weight=np.int64(1))
    assert len(out) == 3


def test_batch_must_be_a_step_batch():
    with pytest.raises(TypeError, match=r"^batch: expected a slea.StepBatch, got dict"):
        slea.compute_advantages(GOOD)  # type: ignore[arg-type]


def test_salt_needs_action_keys():
    with pytest.raises(ValueError, match=r"^action_key: the salt estimator needs"):
        slea.compute_advantages(batch(action_key=None), "salt")


@pytest.mark.parametrize("estimator", slea.ESTIMATORS)
def test_empty_batch_gives_empty_result(estimator):
    empty = slea.StepBatch(group=[], episode=[], step=[], reward=[], key=[], action_key=[])
    assert len(empty) == 0 and empty.n_episodes == 0
    out = slea.compute_advantages(empty, estimator, mode="mean_std_norm")
    for name in ("advantage", "episode_advantage", "step_advantage", "step_return"):
        arr = getattr(out, name)
        assert arr.shape == (0,) and arr.dtype == np.float32
    empty = slea.StepBatch.from_episodes(group=[], reward=[], key=[])
    assert len(slea.compute_advantages(empty)) == 0


def test_overflowing_magnitudes_are_an_error_not_inf():
    big = batch(reward=[1e308, 1e308, 0.0])
    with pytest.raises(ValueError, match=r"^reward: magnitudes too large"):
        slea.compute_advantages(big, "gigpo")
    with pytest.raises(ValueError, match=r"^reward: magnitudes too large"):
        slea.compute_advantages(batch(reward=[1e39, 0.0, 0.0]), "grpo")


def test_from_episodes_checks_shapes():
    with pytest.raises(ValueError, match=r"^group: has 1 episodes but reward has 2"):
        slea.StepBatch.from_episodes(group=[0], reward=[[0.0], [1.0]], key=[[0], [0]])
    with pytest.raises(ValueError, match=r"^key: episode 1 has 2 steps but reward has 1"):
        slea.StepBatch.from_episodes(group=[0, 0], reward=[[0.0], [1.0]], key=[[0], [0, 1]])
    with pytest.raises(TypeError, match=r"^reward: expected a sequence of per-episode"):
        slea.StepBatch.from_episodes(group=[0, 0], reward=[[0.0], 5], key=[[0], [0]])
    with pytest.raises(TypeError, match=r"^group: expected a sequence, got int"):
        slea.StepBatch.from_episodes(group=0, reward=[[0.0]], key=[[0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^invalid: has 1 episodes but reward has 2"):
        slea.StepBatch.from_episodes(
            group=[0, 0], reward=[[0.0], [1.0]], key=[[0], [0]], invalid=[[True]]
        )


junk = st.one_of(
    st.none(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=3),
    st.lists(
        st.one_of(
            st.integers(-(2**65), 2**65),
            st.floats(allow_nan=True, allow_infinity=True),
            st.booleans(),
            st.text(max_size=2),
        ),
        max_size=6,
    ),
)


@given(
    columns=st.fixed_dictionaries({name: junk for name in GOOD}),
    estimator=st.sampled_from([*slea.ESTIMATORS, "nope"]),
    gamma=st.one_of(st.floats(allow_nan=True), st.integers(-3, 3)),
)
def test_arbitrary_input_raises_only_value_or_type_errors(columns, estimator, gamma):
    """Junk columns and parameters either work or raise ValueError/TypeError: never a panic
    (pyo3's PanicException is a BaseException), never another exception type."""
    try:
        b = slea.StepBatch(**columns)
    except (ValueError, TypeError):
        return
    try:
        out = slea.compute_advantages(b, estimator, gamma=gamma)
    except (ValueError, TypeError):
        return
    assert len(out) == len(b)
    assert np.isfinite(out.advantage).all()


@given(
    group=st.lists(st.integers(-3, 3), max_size=10),
    episode=st.lists(st.integers(-3, 3), max_size=10),
    step=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=10),
    reward=st.lists(st.floats(-1e300, 1e300), max_size=10),
)
def test_relational_junk_never_panics(group, episode, step, reward):
    n = min(len(group), len(episode), len(step), len(reward))
    columns = {
        "group": group[:n],
        "episode": episode[:n],
        "step": step[:n],
        "reward": reward[:n],
        "key": [0] * n,
        "action_key": [1] * n,
    }
    try:
        b = slea.StepBatch(**columns)
    except ValueError as exc:
        assert str(exc).split(":")[0] in ("group", "step")
        return
    for estimator in slea.ESTIMATORS:
        try:
            out = slea.compute_advantages(b, estimator, mode="mean_std_norm")
        except ValueError as exc:
            assert str(exc).startswith("reward: magnitudes too large")
            continue
        assert np.isfinite(out.advantage).all()
