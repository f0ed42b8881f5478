"""Rust advantages vs the plain-Python references, invariants and the public surface."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reference.gigpo_ref import gigpo_ref
from reference.salt_ref import salt_ref

import slea
from slea.testing import assert_advantages_close, step_batch_columns

MODES = ("mean_norm", "mean_std_norm")
GIGPO_LIKE = ("grpo", "gigpo", "slea")

params = st.fixed_dictionaries(
    {
        "mode": st.sampled_from(MODES),
        "gamma": st.sampled_from([0.0, 0.5, 0.95, 1.0]),
        "step_weight": st.sampled_from([0.0, 0.5, 1.0]),
        "invalid_penalty": st.sampled_from([0.0, 0.1, 1.0]),
    }
)


def lists(columns: dict[str, np.ndarray]) -> dict[str, list]:
    return {name: col.tolist() for name, col in columns.items()}


@given(columns=step_batch_columns(), estimator=st.sampled_from(GIGPO_LIKE), p=params)
def test_gigpo_family_matches_reference(columns, estimator, p):
    batch = slea.StepBatch(**columns)
    got = slea.compute_advantages(batch, estimator, **p)
    c = lists(columns)
    c.pop("action_key")
    assert_advantages_close(got, gigpo_ref(**c, estimator=estimator, **p))


@given(columns=step_batch_columns(), p=params)
def test_salt_matches_reference(columns, p):
    got = slea.compute_advantages(slea.StepBatch(**columns), "salt", **p)
    assert_advantages_close(got, salt_ref(**lists(columns), **p))


@given(columns=step_batch_columns(max_len=8), estimator=st.sampled_from(slea.ESTIMATORS))
def test_row_order_is_irrelevant(columns, estimator):
    perm = np.random.default_rng(len(columns["group"])).permutation(len(columns["group"]))
    a = slea.compute_advantages(slea.StepBatch(**columns), estimator, mode="mean_std_norm")
    b = slea.compute_advantages(
        slea.StepBatch(**{k: v[perm] for k, v in columns.items()}), estimator, mode="mean_std_norm"
    )
    for name in ("advantage", "episode_advantage", "step_advantage", "step_return"):
        np.testing.assert_allclose(getattr(a, name)[perm], getattr(b, name), atol=1e-6)


@given(
    g=st.integers(1, 8),
    length=st.integers(1, 10),
    reward=st.sampled_from([-1.0, 0.0, 0.5, 1.0]),
    n_actions=st.integers(1, 4),
    estimator=st.sampled_from(slea.ESTIMATORS),
    mode=st.sampled_from(MODES),
)
def test_identical_episodes_give_zero_advantages(g, length, reward, n_actions, estimator, mode):
    """Every episode of a group gets the same rewards and visits the same state at the same step:
    nothing to prefer. (A single row is the one exception: it passes its raw score.)"""
    keys = [3 + 7 * t for t in range(length)]
    actions = [t % n_actions for t in range(length)]
    batch = slea.StepBatch.from_episodes(
        group=[0] * g, reward=[[reward] * length] * g, key=[keys] * g, action_key=[actions] * g
    )
    out = slea.compute_advantages(batch, estimator, mode=mode)
    if g * length > 1:
        np.testing.assert_allclose(out.advantage, 0.0, atol=1e-6)
        np.testing.assert_allclose(out.episode_advantage, 0.0, atol=1e-6)
    np.testing.assert_allclose(out.step_advantage, 0.0, atol=1e-6)


@given(columns=step_batch_columns(max_len=12), mode=st.sampled_from(MODES))
def test_all_zero_rewards_and_valid_actions_give_zero(columns, mode):
    columns = {**columns, "reward": np.zeros(len(columns["group"])), "invalid": None}
    batch = slea.StepBatch(**columns)
    for estimator in slea.ESTIMATORS:
        out = slea.compute_advantages(batch, estimator, mode=mode)
        assert not np.any(out.advantage)
        assert not np.any(out.step_return)


@given(columns=step_batch_columns(max_len=12), p=params)
def test_estimator_invariants(columns, p):
    batch = slea.StepBatch(**columns)
    grpo = slea.compute_advantages(batch, "grpo", **p)
    np.testing.assert_array_equal(grpo.advantage, grpo.episode_advantage)
    assert not np.any(grpo.step_advantage)
    # Every estimator shares the episode level and the returns.
    for estimator in ("gigpo", "slea", "salt"):
        out = slea.compute_advantages(batch, estimator, **p)
        np.testing.assert_array_equal(out.episode_advantage, grpo.episode_advantage)
        np.testing.assert_array_equal(out.step_return, grpo.step_return)
        no_step = slea.compute_advantages(batch, estimator, **{**p, "step_weight": 0.0})
        np.testing.assert_array_equal(no_step.advantage, no_step.episode_advantage)
    # All-distinct keys: every step group is a singleton, so gigpo == grpo.
    distinct = slea.StepBatch(**{**columns, "key": np.arange(len(batch), dtype=np.uint64)})
    gigpo = slea.compute_advantages(distinct, "gigpo", **p)
    np.testing.assert_array_equal(gigpo.advantage, grpo.advantage)
    assert not np.any(gigpo.step_advantage)


def test_hand_computed_gigpo_and_salt():
    # Group 0: episode 0 = rewards [0, 1] in states [7, 8], episode 1 = [0] in state [7].
    batch = slea.StepBatch(
        group=[0, 0, 0],
        episode=[0, 0, 1],
        step=[0, 1, 0],
        reward=[0.0, 1.0, 0.0],
        key=[7, 8, 7],
        invalid=[False, False, True],
        action_key=[1, 2, 1],
    )
    out = slea.compute_advantages(batch, "gigpo")
    # Returns [0.95, 1.0, 0 - 0.1]; scores [1, 1, -0.1] with mean 0.6333.
    np.testing.assert_allclose(out.step_return, [0.95, 1.0, -0.1], atol=1e-7)
    np.testing.assert_allclose(out.episode_advantage, [1.1 / 3, 1.1 / 3, -2.2 / 3], atol=1e-6)
    # Step group (0, 7) = returns {0.95, -0.1}, mean 0.425; (0, 8) is a singleton.
    np.testing.assert_allclose(out.step_advantage, [0.525, 0.0, -0.525], atol=1e-6)
    salt = slea.compute_advantages(batch, "salt")
    # State 7 visited by episodes 0 (outcome 1) and 1 (outcome 0): V = 0.5; both took action 1.
    np.testing.assert_allclose(salt.step_advantage, [0.0, 0.0, -0.1], atol=1e-7)


def test_singleton_group_passes_raw_score():
    batch = slea.StepBatch(group=[3], episode=[9], step=[4], reward=[1.5], key=[0])
    assert slea.compute_advantages(batch, "gigpo").advantage.tolist() == [1.5]
    std = slea.compute_advantages(batch, "gigpo", mode="mean_std_norm")
    assert std.advantage[0] == pytest.approx(1.5 / (1 + 1e-6))


def test_from_episodes_matches_columns():
    a = slea.StepBatch.from_episodes(
        group=[5, 5, 6],
        reward=[[0.0, 1.0], [0.5], [1.0, 0.0, 2.0]],
        key=[[1, 2], [1], [3, 3, 4]],
        invalid=[[False, True], [False], [False, False, True]],
        action_key=[[0, 1], [0], [2, 2, 2]],
    )
    b = slea.StepBatch(
        group=[5, 5, 5, 6, 6, 6],
        episode=[0, 0, 1, 2, 2, 2],
        step=[0, 1, 0, 0, 1, 2],
        reward=[0.0, 1.0, 0.5, 1.0, 0.0, 2.0],
        key=[1, 2, 1, 3, 3, 4],
        invalid=[False, True, False, False, False, True],
        action_key=[0, 1, 0, 2, 2, 2],
    )
    for name in ("group", "episode", "step", "reward", "key", "invalid", "action_key"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (len(a), a.n_episodes, a.n_groups) == (6, 3, 2)
    assert repr(a) == "StepBatch(rows=6, episodes=3, groups=2, action_key=yes)"


def test_batch_is_immutable_and_owns_its_columns():
    reward = np.array([1.0, 0.0])
    batch = slea.StepBatch(group=[0, 0], episode=[0, 1], step=[0, 0], reward=reward, key=[1, 1])
    before = slea.compute_advantages(batch, "gigpo").advantage.copy()
    reward[0] = 100.0  # the caller's array is not shared
    np.testing.assert_array_equal(slea.compute_advantages(batch, "gigpo").advantage, before)
    with pytest.raises(ValueError):
        batch.reward[0] = 2.0
    with pytest.raises(AttributeError):
        batch.reward = reward  # type: ignore[misc]
    assert batch.key.dtype == np.uint64 and batch.invalid.dtype == np.bool_


def test_batch_pickles_by_value():
    import pickle

    batch = slea.StepBatch.from_episodes(
        group=[1, 1], reward=[[0.0, 1.0], [0.5]], key=[[3, 4], [3]], action_key=[[0, 1], [1]]
    )
    copy = pickle.loads(pickle.dumps(batch))
    assert repr(copy) == repr(batch)
    for estimator in slea.ESTIMATORS:
        a = slea.compute_advantages(batch, estimator)
        b = slea.compute_advantages(copy, estimator)
        np.testing.assert_array_equal(a.advantage, b.advantage)


def test_signed_keys_are_reinterpreted_as_uint64():
    batch = slea.StepBatch(group=[0, 0], episode=[0, 1], step=[0, 0], reward=[1, 0], key=[-1, -1])
    assert batch.key.tolist() == [2**64 - 1, 2**64 - 1]
    out = slea.compute_advantages(batch, "gigpo")
    np.testing.assert_allclose(out.step_advantage, [0.5, -0.5])


def test_outputs_are_float32_and_public_names_exist():
    batch = slea.StepBatch(group=[0], episode=[0], step=[0], reward=[1.0], key=[0])
    out = slea.compute_advantages(batch)
    assert isinstance(out, slea.Advantages) and len(out) == 1
    for name in ("advantage", "episode_advantage", "step_advantage", "step_return"):
        arr = getattr(out, name)
        assert arr.dtype == np.float32 and arr.shape == (1,)
    assert slea.ESTIMATORS == ("grpo", "gigpo", "slea", "salt")


@pytest.mark.parametrize("estimator", slea.ESTIMATORS)
@pytest.mark.parametrize("mode", MODES)
def test_singleton_groups_match_reference(estimator, mode):
    """One-row groups, one-episode groups and ordinary groups side by side, rows shuffled."""
    columns = {
        "group": np.array([0, 1, 1, 1, 2, 2, 2, 9, 9]),
        "episode": np.array([0, 1, 1, 1, 2, 3, 3, 4, 5]),
        "step": np.array([0, 0, 1, 2, 0, 0, 1, 3, 3]),
        "reward": np.array([1.5, 0.0, 0.0, 1.0, 0.25, 0.0, -0.5, -1.0, 0.0]),
        "key": np.array([5, 5, 6, 5, 1, 1, 2, 1, 1], dtype=np.uint64),
        "invalid": np.array([False, True, False, False, False, False, True, False, True]),
        "action_key": np.array([0, 1, 0, 1, 0, 0, 1, 2, 2], dtype=np.uint64),
    }
    perm = np.array([8, 3, 0, 5, 1, 7, 2, 6, 4])
    columns = {k: v[perm] for k, v in columns.items()}
    got = slea.compute_advantages(slea.StepBatch(**columns), estimator, mode=mode)
    c = lists(columns)
    if estimator == "salt":
        expected = salt_ref(**c, mode=mode)
    else:
        c.pop("action_key")
        expected = gigpo_ref(**c, estimator=estimator, mode=mode)
    assert_advantages_close(got, expected, atol=1e-6)
    # The one-row group (episode 0) passes its raw score at the episode level.
    row = int(np.flatnonzero(columns["episode"] == 0)[0])
    assert got.episode_advantage[row] == pytest.approx(1.5, rel=2e-6)
