"""Test helpers for slea users and for slea's own tests: hypothesis strategies and asserts.

Needs ``hypothesis`` (``pip install 'slea-rl[test]'``)::

    from hypothesis import given
    from slea.testing import step_batches

    @given(step_batches())
    def test_my_loss(batch): ...

The strategies let hypothesis choose the structure (groups, episodes per group, episode lengths,
key and action alphabets, reward kind, invalid rate, row order) and fill the arrays from a
numpy generator seeded by hypothesis, so large batches stay cheap to draw and reproducible.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from slea.algo.advantages import Advantages, StepBatch
from slea.errors import require

require("hypothesis", "test", "slea.testing")

from hypothesis import strategies as st  # noqa: E402

REWARD_KINDS: tuple[str, ...] = ("sparse", "dense", "ints", "zeros", "constant")
"""How :func:`step_batch_columns` fills rewards: 0/1 at the last step, Gaussian floats, small
integers incl. negatives, all zero, or one constant for every step of every episode."""


@st.composite
def step_batch_columns(
    draw: Any,
    *,
    max_groups: int = 3,
    min_episodes: int = 1,
    max_episodes: int = 16,
    min_len: int = 1,
    max_len: int = 60,
    max_keys: int = 12,
    max_actions: int = 4,
    shuffle: bool | None = None,
) -> dict[str, np.ndarray]:
    """Columns of a random valid :class:`StepBatch` as a dict of numpy arrays.

    ``max_groups`` groups of ``min_episodes..max_episodes`` episodes of ``min_len..max_len``
    steps. Group ids are random int64 (negative too), episode ids unique random int64, steps
    strictly increasing with random gaps and offsets. Keys come from a per-batch alphabet of
    1..``max_keys`` random uint64 values (so keys repeat inside and across episodes), actions
    from 1..``max_actions`` values. ``shuffle=None`` lets hypothesis decide whether rows are
    shuffled (else episode-major order). Keys ``group, episode, step, reward, key, invalid,
    action_key``.
    """
    sizes = draw(st.lists(st.integers(min_episodes, max_episodes), min_size=1, max_size=max_groups))
    lengths = draw(
        st.lists(st.integers(min_len, max_len), min_size=sum(sizes), max_size=sum(sizes))
    )
    n_keys = draw(st.integers(1, max_keys))
    n_actions = draw(st.integers(1, max_actions))
    reward_kind = draw(st.sampled_from(REWARD_KINDS))
    invalid_rate = draw(st.sampled_from([0.0, 0.1, 0.5]))
    if shuffle is None:
        shuffle = draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))

    n_episodes = len(lengths)
    lens = np.asarray(lengths, dtype=np.int64)
    n = int(lens.sum())
    group_ids = rng.integers(-(2**62), 2**62, size=len(sizes), dtype=np.int64)
    episode_ids = rng.choice(2**40, size=n_episodes, replace=False).astype(np.int64) - 2**39
    group = np.repeat(np.repeat(group_ids, sizes), lens)
    episode = np.repeat(episode_ids, lens)
    gaps = rng.integers(1, 4, size=n, dtype=np.int64)
    starts = np.cumsum(lens) - lens
    cum = np.cumsum(gaps)
    step = (
        cum
        - np.repeat(cum[starts] - gaps[starts], lens)
        + np.repeat(rng.integers(-5, 50, size=n_episodes), lens)
    )
    alphabet = rng.integers(0, 2**64, size=n_keys, dtype=np.uint64)
    key = alphabet[rng.integers(0, n_keys, size=n)]
    action_key = rng.integers(0, n_actions, size=n).astype(np.uint64)
    invalid = rng.random(n) < invalid_rate
    reward = _rewards(rng, reward_kind, lens)

    columns = {
        "group": group,
        "episode": episode,
        "step": step,
        "reward": reward,
        "key": key,
        "invalid": invalid,
        "action_key": action_key,
    }
    if shuffle:
        perm = rng.permutation(n)
        columns = {name: col[perm] for name, col in columns.items()}
    return columns


def _rewards(rng: np.random.Generator, kind: str, lens: np.ndarray) -> np.ndarray:
    n = int(lens.sum())
    if kind == "sparse":
        reward = np.zeros(n)
        reward[np.cumsum(lens) - 1] = rng.integers(0, 2, size=len(lens))
        return reward
    if kind == "dense":
        return np.round(rng.normal(0.0, 1.0, size=n), 3)
    if kind == "ints":
        return rng.integers(-2, 3, size=n).astype(np.float64)
    if kind == "constant":
        return np.full(n, float(rng.integers(-3, 4)) / 2)
    return np.zeros(n)


def step_batches(**kwargs: Any) -> st.SearchStrategy[StepBatch]:
    """Random valid :class:`StepBatch` objects; arguments as :func:`step_batch_columns`."""
    return step_batch_columns(**kwargs).map(lambda c: StepBatch(**c))


def assert_advantages_close(
    got: Advantages, expected: dict[str, Any] | Advantages, atol: float = 1e-5
) -> None:
    """Assert the four arrays of ``got`` match ``expected`` (an Advantages or a dict of arrays)
    within ``atol``; the message names the field and the worst row."""
    for name in ("advantage", "episode_advantage", "step_advantage", "step_return"):
        want = getattr(expected, name) if isinstance(expected, Advantages) else expected[name]
        have = np.asarray(getattr(got, name), dtype=np.float64)
        want = np.asarray(want, dtype=np.float64)
        assert have.shape == want.shape, f"{name}: shape {have.shape} != {want.shape}"
        if have.size:
            diff = np.abs(have - want)
            worst = int(np.argmax(diff))
            assert diff[worst] <= atol, (
                f"{name}: row {worst} differs by {diff[worst]:.3g} "
                f"(got {have[worst]}, expected {want[worst]})"
            )


__all__ = [
    "REWARD_KINDS",
    "assert_advantages_close",
    "step_batch_columns",
    "step_batches",
]
