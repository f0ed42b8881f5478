r"""The contract every slea text environment follows (``TextEnv``), and its text space.

A slea env is a ``gymnasium.Env[str, str]``: the observation and the action are plain strings.
``reset(seed=..., options=...)`` returns ``(observation, info)``; ``step(action)`` returns
``(observation, reward, terminated, truncated, info)``. ``info`` always holds:

=====================  ==========================================================================
key                    meaning
=====================  ==========================================================================
``task``               the goal text of the episode (str)
``task_id``            index of the task in the env's task list (int; -1 for an ad-hoc task)
``admissible_actions`` the actions the env accepts now (list of str; empty where it has none)
``won``                the episode's goal is reached (bool)
``invalid_action``     the last action was not understood or not admissible (bool; False at reset)
``score``              the game's score so far (float)
``max_score``          the best reachable score (float)
``state_key``          canonical ground-truth state string (room, visible things, inventory)
``walkthrough``        a list of actions that wins from the start, where the game has one
=====================  ==========================================================================

Rewards: ``reward_mode="sparse"`` gives 1.0 on the step that wins, else 0.0; ``"dense"`` gives the
score increment of the step divided by ``max_score`` (so a won episode's dense return is 1.0 when
the score only grows). ``terminated`` is True when the game is won or lost; the step limit is
gymnasium's ``TimeLimit`` (``max_episode_steps``), which sets ``truncated``.

An action the env does not understand is not an exception: the game's feedback comes back with
``invalid_action=True``. A non-str action raises ``TypeError``. ``reset(seed=s)`` is
reproducible: the same seed picks the same task and gives the same observations. Every env takes
``options={"task_id": i}`` in ``reset`` to play task ``i`` (a game, a variation, a level).

Actions are sanitised here, at the env boundary, for every env (a subclass's ``_step_action``
never sees the rest): leading and trailing ASCII whitespace (space, ``\t``, ``\n``, ``\r``,
``\v``, ``\f``) is stripped first, so a model's ``"go east\n"`` stays the command ``go east``;
then an action that still holds a control character (C0 ``U+0000``-``U+001F``, tab and newline
inside the text included; DEL ``U+007F``; C1 ``U+0080``-``U+009F``) or a lone surrogate
(``U+D800``-``U+DFFF``) is refused without reaching the game: the step returns the env's
"not available" feedback (``refused_action_feedback``) with the state, score and admissible
actions unchanged, reward 0.0 and ``invalid_action=True``. (Some of these bytes crash or hang
game interpreters: ``\x0e``-``\x15`` segfault Jericho's frotz, ``\x00`` hangs it.) Any other
``str`` is passed on, and the env stays usable whatever string it was given.
"""

from __future__ import annotations

import operator
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import gymnasium
from gymnasium.spaces import Text

from slea.errors import EnvError

REWARD_MODES = ("sparse", "dense")

#: Longest observation the observation space admits (characters).
MAX_OBSERVATION_LENGTH = 1 << 20
#: Longest action the action space admits (characters).
MAX_ACTION_LENGTH = 1 << 12

_SAMPLE_CHARSET = string.ascii_letters + string.digits + string.punctuation + " "

#: Whitespace stripped from both ends of an action before it is checked.
ACTION_STRIP = " \t\n\r\v\f"
#: Characters that make an action invalid: C0 controls, DEL, C1 controls, lone surrogates.
_FORBIDDEN_IN_ACTION = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def sanitize_action(action: str) -> str | None:
    """``action`` with leading/trailing ASCII whitespace stripped, or None when what is left
    holds a control character (C0, DEL, C1) or a lone surrogate: an action no env accepts."""
    action = action.strip(ACTION_STRIP)
    return None if _FORBIDDEN_IN_ACTION.search(action) else action


class TextSpace(Text):
    """A gymnasium ``Text`` space that contains *any* ``str`` of at most ``max_length`` characters.

    gymnasium's ``Text`` checks every character against a finite charset; game text holds any
    Unicode character, so ``contains`` here only checks the type and the length. ``sample`` draws
    printable ASCII (letters, digits, punctuation, space), at most 64 characters.
    """

    def __init__(self, max_length: int, *, seed: int | None = None) -> None:
        super().__init__(max_length, min_length=0, charset=_SAMPLE_CHARSET, seed=seed)

    def contains(self, x: Any) -> bool:
        return isinstance(x, str) and len(x) <= self.max_length

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        if mask is None and probability is None:
            length = int(self.np_random.integers(0, min(self.max_length, 64) + 1))
            return super().sample(mask=(length, None))
        return super().sample(mask=mask, probability=probability)

    def __repr__(self) -> str:
        return f"TextSpace(max_length={self.max_length})"


@dataclass
class Transition:
    """What a backend reports after a reset or a step (the base class turns it into the 5-tuple).

    ``score`` is the game's cumulative score; ``admissible`` the actions accepted now;
    ``extra`` holds env-specific info keys added to ``info``.
    """

    observation: str
    score: float = 0.0
    won: bool = False
    lost: bool = False
    invalid: bool = False
    admissible: list[str] = field(default_factory=list)
    state_key: str = ""
    extra: dict[str, Any] | None = None


class TextEnv(gymnasium.Env[str, str]):
    """Base class of slea's text envs: validation, rewards and the ``info`` contract.

    Subclasses implement ``_reset_task(task_id, options) -> Transition`` (after setting
    ``self.task``, ``self.max_score`` and ``self.walkthrough``) and
    ``_step_action(action) -> Transition``, and define ``num_tasks``.
    """

    metadata = {"render_modes": ["ansi", "human"], "render_fps": 4}  # noqa: RUF012
    #: the observation of a refused action (see the module docstring; subclasses use their
    #: game's own "not understood" wording).
    refused_action_feedback: ClassVar[str] = "That command is not available."
    #: option keys ``reset`` accepts besides ``task_id`` (subclasses extend it).
    reset_option_keys: ClassVar[tuple[str, ...]] = ("task_id",)

    def __init__(self, *, reward_mode: str = "sparse", render_mode: str | None = None) -> None:
        if reward_mode not in REWARD_MODES:
            raise ValueError(f"reward_mode must be one of {REWARD_MODES}, got {reward_mode!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be None or one of {self.metadata['render_modes']}, "
                f"got {render_mode!r}"
            )
        self.reward_mode = reward_mode
        self.render_mode = render_mode
        self.observation_space = TextSpace(MAX_OBSERVATION_LENGTH)
        self.action_space = TextSpace(MAX_ACTION_LENGTH)
        self.task = ""
        self.task_id = -1
        self.max_score = 1.0
        self.walkthrough: list[str] | None = None
        self._last: Transition | None = None
        self._done = True

    # -- to implement -------------------------------------------------------------------------
    @property
    def num_tasks(self) -> int:
        """Number of tasks ``options={"task_id": i}`` can pick (``0 <= i < num_tasks``)."""
        raise NotImplementedError

    def _reset_task(self, task_id: int, options: dict[str, Any]) -> Transition:
        raise NotImplementedError

    def _step_action(self, action: str) -> Transition:
        raise NotImplementedError

    # -- gymnasium API ------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Start an episode; ``options={"task_id": i}`` picks the task, else the seeded RNG does.

        Returns ``(observation, info)``; ``info`` follows the contract in the module docstring.
        """
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - set(self.reset_option_keys)
        if unknown:
            raise ValueError(
                f"unknown reset option(s) {sorted(unknown)}; valid: {list(self.reset_option_keys)}"
            )
        task_id = options.pop("task_id", None)
        if task_id is None:
            task_id = self._draw_task_id(options)
        else:
            task_id = self._check_task_id(task_id)
        t = self._reset_task(task_id, options)
        self._last = t
        self._done = False
        return t.observation, self._info(t, invalid=False)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Play ``action`` (a str). Returns ``(observation, reward, terminated, truncated, info)``."""
        if not isinstance(action, str):
            raise TypeError(f"action must be a str, got {type(action).__name__}")
        if self._done or self._last is None:
            raise EnvError("the episode is over (or never started): call reset() first")
        prev = self._last
        clean = sanitize_action(action)
        t = self._refuse_action(action) if clean is None else self._step_action(clean)
        self._last = t
        if self.reward_mode == "sparse":
            reward = 1.0 if t.won and not prev.won else 0.0
        else:
            reward = float(t.score - prev.score) / (self.max_score or 1.0)
        terminated = bool(t.won or t.lost)
        self._done = terminated
        return t.observation, reward, terminated, False, self._info(t, invalid=t.invalid)

    def render(self) -> str | None:  # type: ignore[override]
        """``ansi``: the last observation as a string; ``human``: print it."""
        text = self._last.observation if self._last is not None else ""
        if self.render_mode == "human":
            print(text)
            return None
        return text

    # -- helpers ------------------------------------------------------------------------------
    def _refuse_action(self, action: str) -> Transition:
        """The transition of a refused ``action``: the last state again, with
        ``refused_action_feedback`` as the observation and ``invalid=True``."""
        assert self._last is not None
        return replace(self._last, observation=self.refused_action_feedback, invalid=True)

    def _draw_task_id(self, options: dict[str, Any]) -> int:
        return int(self.np_random.integers(self.num_tasks))

    def _check_task_id(self, task_id: Any) -> int:
        try:
            index = operator.index(task_id)
        except TypeError:
            index = None
        if index is None or isinstance(task_id, bool):
            raise TypeError(f"options['task_id'] must be an int, got {type(task_id).__name__}")
        if not 0 <= index < self.num_tasks:
            raise ValueError(f"options['task_id'] must be in [0, {self.num_tasks}), got {index}")
        return index

    def _info(self, t: Transition, *, invalid: bool) -> dict[str, Any]:
        info: dict[str, Any] = {
            "task": self.task,
            "task_id": self.task_id,
            "admissible_actions": t.admissible,
            "won": bool(t.won),
            "invalid_action": bool(invalid),
            "score": float(t.score),
            "max_score": float(self.max_score),
            "state_key": t.state_key,
        }
        if self.walkthrough is not None:
            info["walkthrough"] = self.walkthrough
        if t.extra:
            info.update(t.extra)
        return info


def normalize_command(text: str) -> str:
    """Lower-case, strip and collapse whitespace: how commands are compared with admissible ones."""
    return " ".join(text.lower().split())


def admissible_set(actions: Sequence[str]) -> frozenset[str]:
    """The normalised set of ``actions`` (see :func:`normalize_command`)."""
    return frozenset(normalize_command(a) for a in actions)
