"""Gymnasium text environments of slea (registered as ``slea/<Name>-v0``).

=========================  =====================================================================
id                         what
=========================  =====================================================================
``slea/TextWorld-v0``      TextWorld-generated games (``games=``; make them with ``make_games``)
``slea/ALFWorld-v0``       ALFWorld household tasks (``data_dir=``, ``split=``, ``task_types=``)
``slea/ScienceWorld-v0``   ScienceWorld tasks (``task_name=``, ``variations=``; needs Java)
``slea/Sokoban-v0``        pure-Python text Sokoban on generated solvable levels
=========================  =====================================================================

Every env follows the contract of :mod:`slea.envs.base` (string observations and actions, the
``info`` keys, ``reward_mode``, ``options={"task_id": i}``). ``make_vec(env_id, num_envs, **kw)``
(:mod:`slea.envs.vector`) gives the lock-step, crash-recovering vector env the trainer uses.

The ids are registered with ``gymnasium.register`` when ``slea`` or ``slea.envs`` is imported
(gymnasium, a core dependency, is imported then; torch, textworld and the other env packages
are not: an env's module is imported by ``gymnasium.make``). Import ``slea.envs`` and keep the
import with gymnasium's own idiom, a no-op that tells linters the module is used::

    import gymnasium
    import slea.envs

    gymnasium.register_envs(slea.envs)
    env = gymnasium.make("slea/Sokoban-v0")

``register_envs()`` registers the ids again where they are missing (idempotent).

Your own env: follow the same contract, register it with ``gymnasium.register``, and ask
``check_contract(env)`` what it lacks; ``Task`` and ``TaskSource`` (:mod:`slea.envs.tasks`)
describe the tasks each split plays (``slea.Trainer(config, tasks=...)``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from slea.envs.registry import ENVS, EnvEntry, missing_requirements, register_envs

if TYPE_CHECKING:
    from slea.envs.vector import SleaVectorEnv


def make_vec(env_id: str, num_envs: int, **kwargs: Any) -> SleaVectorEnv:
    """Lock-step vector env of ``num_envs`` copies of ``env_id`` (see :mod:`slea.envs.vector`)."""
    from slea.envs.vector import make_vec as _make_vec

    return _make_vec(env_id, num_envs, **kwargs)


# Names re-exported lazily (their modules import gymnasium / numpy on first use).
_LAZY = {
    "SleaVectorEnv": "slea.envs.vector",
    "unbatch_infos": "slea.envs.vector",
    "TextEnv": "slea.envs.base",
    "TextSpace": "slea.envs.base",
    "TextWorldEnv": "slea.envs.textworld",
    "make_games": "slea.envs.textworld",
    "make_splits": "slea.envs.textworld",
    "ALFWorldEnv": "slea.envs.alfworld",
    "ScienceWorldEnv": "slea.envs.scienceworld",
    "SokobanEnv": "slea.envs.sokoban",
    "check_contract": "slea.envs.check",
    "resolve_env_id": "slea.envs.check",
    "Task": "slea.envs.tasks",
    "TaskSource": "slea.envs.tasks",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'slea.envs' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = ["ENVS", "EnvEntry", "make_vec", "missing_requirements", "register_envs", *sorted(_LAZY)]

register_envs()
