"""Step-level advantages: the GRPO, GiGPO, SLEA and SALT estimators, computed in Rust in O(n).

A :class:`StepBatch` holds one row per (episode, step), in any row order; rows of one episode are
ordered by ``step`` internally. :func:`compute_advantages` returns per-row float32 arrays.

Semantics (GiGPO as in verl-agent's ``gigpo/core_gigpo.py``; ``p`` = ``invalid_penalty``,
``v`` = the row's ``invalid`` flag as 0/1):

- ``step_return`` = the discounted return of the row within its episode,
  ``reward[t] + gamma * return[t + 1]``, minus ``p * v`` (the penalty comes after discounting).
- Episode score = the undiscounted sum of the episode's rewards (verl-agent's
  ``episode_rewards``, written on every step row of the episode); a row's score is that sum
  minus ``p * v``.
- ``episode_advantage``: the row's score normalised with the mean (and std) of the scores of all
  step rows of its group, so longer episodes weigh more. A group with a single row has mean 0 and
  std 1: it passes its raw score (verl-agent's rule; a single episode with several steps
  therefore gets 0 in ``mean_norm``).
- ``step_advantage`` (``gigpo``, ``slea``): the row's ``step_return`` normalised within its step
  group, keyed by (group, key), repeats inside one episode included; a step group of one row
  gives 0. ``slea`` is ``gigpo`` with observation-cluster ids as keys.
- ``step_advantage`` (``salt``): with ``s`` = (group, key) and ``a`` = action_key, and an
  episode's outcome = its score (sum of its rewards): ``V(s)`` = mean outcome of the distinct
  episodes of the group that visited ``s``; ``Q(s, a)`` = mean outcome of the distinct episodes
  that took ``a`` in ``s`` (an episode counts once however often it repeats them);
  ``step_advantage = Q(s, a) - V(s)``, divided by ``std + eps`` in ``mean_std_norm`` where std
  is the unbiased std of the outcomes behind ``V(s)`` (1 if a single episode visited ``s``),
  then minus ``p * v`` (after normalising, so the penalty keeps its size).
- ``grpo``: ``step_advantage = 0`` and ``advantage = episode_advantage``.
- ``advantage = episode_advantage + step_weight * step_advantage``.

``mean_norm`` is ``x - mean``; ``mean_std_norm`` is ``(x - mean) / (std + eps)`` with the
unbiased (n - 1) standard deviation.

Example::

    >>> import slea
    >>> batch = slea.StepBatch.from_episodes(group=[0, 0], reward=[[0.0, 1.0], [0.0]],
    ...                                      key=[[7, 8], [7]])
    >>> adv = slea.compute_advantages(batch, "gigpo")
    >>> [round(float(x), 4) for x in adv.advantage]
    [0.8083, 0.3333, -1.1417]
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from slea import _core
from slea.errors import ConfigError

ESTIMATORS: tuple[str, ...] = ("grpo", "gigpo", "slea", "salt")
"""Names accepted by :func:`compute_advantages`."""

MODES: tuple[str, ...] = ("mean_norm", "mean_std_norm")
"""Group normalisations accepted by :func:`compute_advantages`."""

_INT64_MAX = np.iinfo(np.int64).max


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {msg}")


@dataclass(frozen=True)
class AdvantageConfig:
    """Advantage estimator (Rust kernels, slea.compute_advantages)."""

    estimator: str = "slea"
    """grpo, gigpo, slea or salt."""
    gamma: float = 0.95
    """Discount of the step returns."""
    mode: str = "mean_norm"
    """mean_norm (subtract the group mean) or mean_std_norm (also divide by the std)."""
    step_weight: float = 1.0
    """w in A = A_episode + w * A_step."""
    invalid_penalty: float = 0.1
    """Subtracted from the return of a step whose action was invalid."""

    def __post_init__(self) -> None:
        _check(
            self.estimator in ESTIMATORS,
            "advantage.estimator",
            f"must be grpo, gigpo, slea or salt, got {self.estimator!r}",
        )
        _check(0 <= self.gamma <= 1, "advantage.gamma", f"must be in [0, 1], got {self.gamma}")
        _check(
            self.mode in MODES,
            "advantage.mode",
            "must be mean_norm or mean_std_norm",
        )
        _check(self.invalid_penalty >= 0, "advantage.invalid_penalty", "must be >= 0")


class StepBatch:
    """Columnar step rows: one row per (episode, step), validated on construction.

    Args:
        group: int, shape (n,): the task group (the G rollouts of one task) of each row.
        episode: int, shape (n,): episode id; an episode belongs to exactly one group.
        step: int, shape (n,): step index within the episode; (episode, step) pairs are unique.
            Rows may come in any order; only the order of steps within an episode matters.
        reward: float, shape (n,): per-step env reward, finite.
        key: uint64, shape (n,): step-group key (an anchor-observation hash or a cluster id).
            Signed integers are reinterpreted bit for bit as uint64.
        invalid: bool, shape (n,): the step's action was invalid (default: all False).
        action_key: uint64, shape (n,), optional: the action taken; required by ``salt``.

    The batch keeps one validated copy of the columns (int64, float64, uint64, bool); the
    attributes ``group``, ``episode``, ... return read-only numpy copies of them.

    Raises:
        TypeError: a column has a dtype that cannot represent it (the message names it).
        ValueError: lengths differ, a reward is not finite, an episode spans two groups, a step
            repeats within an episode, or a value is out of range (the message names the column).
    """

    __slots__ = ("_inner",)

    _inner: _core.StepBatch

    def __init__(
        self,
        group: npt.ArrayLike,
        episode: npt.ArrayLike,
        step: npt.ArrayLike,
        reward: npt.ArrayLike,
        key: npt.ArrayLike,
        invalid: npt.ArrayLike | None = None,
        action_key: npt.ArrayLike | None = None,
    ) -> None:
        g = _int64_column("group", group, None)
        n = len(g)
        inner = _core.StepBatch(
            group=g,
            episode=_int64_column("episode", episode, n),
            step=_int64_column("step", step, n),
            reward=_reward_column(reward, n),
            key=_key_column("key", key, n),
            invalid=_invalid_column(invalid, n),
            action_key=None if action_key is None else _key_column("action_key", action_key, n),
        )
        object.__setattr__(self, "_inner", inner)

    @classmethod
    def from_episodes(
        cls,
        group: Sequence[int],
        reward: Sequence[Sequence[float]],
        key: Sequence[Sequence[int]],
        invalid: Sequence[Sequence[bool]] | None = None,
        action_key: Sequence[Sequence[int]] | None = None,
    ) -> StepBatch:
        """Build a batch from per-episode lists.

        Episode ``i`` (id ``i``) belongs to ``group[i]``; its steps are ``0 .. len(reward[i]) - 1``
        with rewards ``reward[i]``, keys ``key[i]`` and, optionally, flags ``invalid[i]`` and
        actions ``action_key[i]``, each of the same length as ``reward[i]``.
        """
        per_episode = {"reward": reward, "key": key, "invalid": invalid, "action_key": action_key}
        for name, lists in per_episode.items():
            if lists is not None and not all(hasattr(xs, "__len__") for xs in _sized(name, lists)):
                raise TypeError(f"{name}: expected a sequence of per-episode sequences")
        n_episodes = len(reward)
        if len(_sized("group", group)) != n_episodes:
            raise ValueError(f"group: has {len(group)} episodes but reward has {n_episodes}")
        lengths = np.array([len(r) for r in reward], dtype=np.int64)
        for name, lists in per_episode.items():
            if lists is None:
                continue
            if len(lists) != n_episodes:
                raise ValueError(f"{name}: has {len(lists)} episodes but reward has {n_episodes}")
            for i, (xs, length) in enumerate(zip(lists, lengths, strict=True)):
                if len(xs) != length:
                    msg = f"{name}: episode {i} has {len(xs)} steps but reward has {length}"
                    raise ValueError(msg)
        starts = np.cumsum(lengths) - lengths
        total = int(lengths.sum())

        def flat(lists: Sequence[Sequence[Any]]) -> np.ndarray:
            return np.concatenate([np.asarray(x) for x in lists]) if total else np.empty(0)

        return cls(
            group=np.repeat(np.asarray(group), lengths) if total else np.empty(0, np.int64),
            episode=np.repeat(np.arange(n_episodes, dtype=np.int64), lengths),
            step=np.arange(total, dtype=np.int64) - np.repeat(starts, lengths),
            reward=flat(reward),
            key=flat(key),
            invalid=None if invalid is None else flat(invalid),
            action_key=None if action_key is None else flat(action_key),
        )

    def __len__(self) -> int:
        return len(self._inner)

    def __reduce__(self) -> tuple[Any, ...]:
        columns = (self.group, self.episode, self.step, self.reward, self.key, self.invalid)
        return (StepBatch, (*columns, self.action_key))

    @property
    def group(self) -> npt.NDArray[np.int64]:
        """int64, shape (n,): the task group of each row (read-only copy)."""
        return _readonly(self._inner.group)

    @property
    def episode(self) -> npt.NDArray[np.int64]:
        """int64, shape (n,): the episode id of each row (read-only copy)."""
        return _readonly(self._inner.episode)

    @property
    def step(self) -> npt.NDArray[np.int64]:
        """int64, shape (n,): the step index of each row (read-only copy)."""
        return _readonly(self._inner.step)

    @property
    def reward(self) -> npt.NDArray[np.float64]:
        """float64, shape (n,): the per-step reward (read-only copy)."""
        return _readonly(self._inner.reward)

    @property
    def key(self) -> npt.NDArray[np.uint64]:
        """uint64, shape (n,): the step-group key (read-only copy)."""
        return _readonly(self._inner.key)

    @property
    def invalid(self) -> npt.NDArray[np.bool_]:
        """bool, shape (n,): the invalid-action flag (read-only copy)."""
        return _readonly(self._inner.invalid)

    @property
    def action_key(self) -> npt.NDArray[np.uint64] | None:
        """uint64, shape (n,), or None: the action taken (read-only copy)."""
        actions = self._inner.action_key
        return None if actions is None else _readonly(actions)

    @property
    def n_episodes(self) -> int:
        """Number of distinct episodes."""
        return int(self._inner.n_episodes)

    @property
    def n_groups(self) -> int:
        """Number of distinct groups."""
        return int(self._inner.n_groups)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"StepBatch is immutable; cannot set {name!r}")

    def __repr__(self) -> str:
        actions = "yes" if self._inner.has_action_key else "no"
        return (
            f"StepBatch(rows={len(self)}, episodes={self.n_episodes}, groups={self.n_groups}, "
            f"action_key={actions})"
        )


@dataclass(frozen=True, eq=False)
class Advantages:
    """Per-row results of :func:`compute_advantages`, float32, in the batch's row order."""

    advantage: npt.NDArray[np.float32]
    """``episode_advantage + step_weight * step_advantage``, shape (n,)."""
    episode_advantage: npt.NDArray[np.float32]
    """The row's episode score normalised within its group, shape (n,)."""
    step_advantage: npt.NDArray[np.float32]
    """The estimator's step-level term (0 for ``grpo``), shape (n,)."""
    step_return: npt.NDArray[np.float32]
    """Discounted return of the row minus its invalid-action penalty, shape (n,)."""

    def __len__(self) -> int:
        return len(self.advantage)


def compute_advantages(
    batch: StepBatch,
    estimator: str = "slea",
    *,
    gamma: float = 0.95,
    mode: str = "mean_norm",
    step_weight: float = 1.0,
    invalid_penalty: float = 0.1,
    eps: float = 1e-6,
) -> Advantages:
    """Per-row advantages of ``batch`` (see the module docstring for the exact semantics).

    Args:
        batch: the step rows.
        estimator: one of :data:`ESTIMATORS` (``grpo``, ``gigpo``, ``slea``, ``salt``).
        gamma: discount of the step returns, in [0, 1].
        mode: ``mean_norm`` (``x - mean``) or ``mean_std_norm`` (``(x - mean) / (std + eps)``).
        step_weight: weight of the step advantage in ``advantage``, finite.
        invalid_penalty: subtracted from an invalid row's return and score, finite, >= 0.
        eps: added to the std in ``mean_std_norm``, > 0.

    Returns:
        :class:`Advantages` with four float32 arrays of shape (len(batch),). O(n) in rows; the
        GIL is released during the computation. An empty batch gives empty arrays.
    """
    if not isinstance(batch, StepBatch):
        raise TypeError(f"batch: expected a slea.StepBatch, got {type(batch).__name__}")
    _choice("estimator", estimator, ESTIMATORS)
    _choice("mode", mode, MODES)
    gamma = _real("gamma", gamma, low=0.0, high=1.0)
    step_weight = _real("step_weight", step_weight)
    invalid_penalty = _real("invalid_penalty", invalid_penalty, low=0.0)
    eps = _real("eps", eps, low=0.0, open_low=True)
    if estimator == "salt" and not batch._inner.has_action_key:
        raise ValueError(
            "action_key: the salt estimator needs the action taken at every step; "
            "build the StepBatch with action_key=..."
        )
    adv, episode, step, ret = _core.compute_advantages(
        batch._inner, estimator, gamma, mode, step_weight, invalid_penalty, eps
    )
    return Advantages(adv, episode, step, ret)


def _sized(name: str, value: object) -> Sequence[Any]:
    if not isinstance(value, Sequence | np.ndarray):
        raise TypeError(f"{name}: expected a sequence, got {type(value).__name__}")
    return value  # type: ignore[return-value]


def _choice(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a str, one of {allowed}, got {type(value).__name__}")
    if value not in allowed:
        raise ValueError(f"{name}: unknown {name} {value!r}; choose one of {allowed}")


def _real(
    name: str,
    value: object,
    low: float | None = None,
    high: float | None = None,
    open_low: bool = False,
) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    x = float(value)
    bad = not math.isfinite(x)
    bad |= low is not None and (x <= low if open_low else x < low)
    bad |= high is not None and x > high
    if bad:
        lo = "" if low is None else f"{'>' if open_low else '>='} {low}"
        hi = "" if high is None else f"<= {high}"
        bounds = " and ".join(b for b in (lo, hi) if b)
        raise ValueError(f"{name}: must be finite{' and ' + bounds if bounds else ''}, got {x}")
    return x


def _array(name: str, values: object, n: int | None) -> np.ndarray:
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{name}: cannot be read as a 1-D array ({exc})") from exc
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array, got shape {arr.shape}")
    if n is not None and len(arr) != n:
        raise ValueError(f"{name}: has {len(arr)} rows but group has {n}")
    return arr


def _int64_column(name: str, values: object, n: int | None) -> npt.NDArray[np.int64]:
    arr = _array(name, values, n)
    if arr.size == 0:
        return np.empty(0, dtype=np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and int(arr.max()) > _INT64_MAX:
        raise ValueError(f"{name}: values must fit in int64, got {int(arr.max())}")
    return np.asarray(arr, dtype=np.int64)


def _key_column(name: str, values: object, n: int) -> npt.NDArray[np.uint64]:
    arr = _array(name, values, n)
    if arr.size == 0:
        return np.empty(0, dtype=np.uint64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer keys (uint64), got dtype {arr.dtype}")
    if arr.dtype.kind == "i":
        return np.asarray(arr, dtype=np.int64).view(np.uint64)
    return np.asarray(arr, dtype=np.uint64)


def _reward_column(values: object, n: int) -> npt.NDArray[np.float64]:
    arr = _array("reward", values, n)
    if arr.size == 0:
        return np.empty(0, dtype=np.float64)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"reward: expected real numbers, got dtype {arr.dtype}")
    return np.asarray(arr, dtype=np.float64)  # finiteness is checked in Rust, same message


def _invalid_column(values: object, n: int) -> npt.NDArray[np.bool_]:
    if values is None:
        return np.zeros(n, dtype=np.bool_)
    arr = _array("invalid", values, n)
    if arr.size == 0:
        return np.empty(0, dtype=np.bool_)
    if arr.dtype.kind == "b":
        return np.asarray(arr, dtype=np.bool_)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"invalid: expected booleans, got dtype {arr.dtype}")
    if not np.isin(arr, (0, 1)).all():
        raise ValueError("invalid: integer flags must be 0 or 1")
    return arr.astype(np.bool_)


def _readonly(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


__all__ = [
    "ESTIMATORS",
    "MODES",
    "AdvantageConfig",
    "Advantages",
    "StepBatch",
    "compute_advantages",
]
