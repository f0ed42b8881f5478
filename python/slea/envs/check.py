"""Checks of an env against slea's contract, for users bringing their own env.

:func:`check_contract` plays one reset and one step and lists everything slea needs that the env
lacks (the ``info`` keys a rollout reads, their types, the reset and step return shapes).
:func:`resolve_env_id` accepts gymnasium's ``module:EnvId`` form. :func:`check_task_options`
resets an env on a few tasks of a list, so that options the env rejects are found before a run
starts::

    import slea.envs
    problems = slea.envs.check_contract(MyEnv())          # [] when the env is fine
    slea.envs.check_contract(MyEnv(), raises=True)        # EnvError listing every problem
"""

from __future__ import annotations

import importlib
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import gymnasium

from slea.envs.registry import register_envs
from slea.errors import EnvError

#: ``info`` keys a rollout reads, at reset and after each step, with their types.
REQUIRED_INFO: dict[str, str] = {
    "task": "str",
    "admissible_actions": "list of str",
    "won": "bool",
}
#: The other keys of the contract (slea.envs.base); checked for their type when present.
OPTIONAL_INFO: dict[str, str] = {
    "invalid_action": "bool",
    "task_id": "int",
    "score": "number",
    "max_score": "number",
    "state_key": "str",
    "walkthrough": "list of str",
}


def _type_ok(value: Any, kind: str) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "bool":
        return isinstance(value, bool) or type(value).__name__ == "bool_"  # numpy's bool too
    if kind == "int":
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, numbers.Real) and math.isfinite(float(value))
    return isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)


def _check_info(info: Any, where: str) -> list[str]:
    if not isinstance(info, Mapping):
        return [f"{where}: info must be a dict, got {type(info).__name__}"]
    problems = []
    for key, kind in REQUIRED_INFO.items():
        if key not in info:
            problems.append(f"{where}: info lacks {key!r} ({kind}); slea's rollouts read it")
        elif not _type_ok(info[key], kind):
            problems.append(f"{where}: info[{key!r}] must be a {kind}, got {info[key]!r:.80}")
    for key, kind in OPTIONAL_INFO.items():
        if key in info and not _type_ok(info[key], kind):
            problems.append(f"{where}: info[{key!r}] must be a {kind}, got {info[key]!r:.80}")
    return problems


def check_contract(
    env: Any,
    options: Mapping[str, Any] | None = None,
    *,
    seed: int = 0,
    require_actions: bool = True,
    raises: bool = False,
) -> list[str]:
    """What ``env`` lacks to be trained by slea: one line per problem (empty when none).

    Resets ``env`` (``seed``, ``options``), checks that it returns ``(str, dict)`` and the info
    keys of :data:`REQUIRED_INFO` with their types (and those of :data:`OPTIONAL_INFO` that are
    present), then steps with the first admissible action (``"look"`` when there is none) and
    checks the 5-tuple (``str``, finite number, ``bool``, ``bool``, info). With
    ``require_actions`` an empty ``admissible_actions`` list at reset is a problem (choice mode
    scores those actions; generate mode can do without). With ``raises`` the problems raise one
    :class:`~slea.errors.EnvError` listing them all.
    """
    problems = _contract_problems(env, options, seed, require_actions)
    if problems and raises:
        name = getattr(getattr(env, "spec", None), "id", None) or type(env).__name__
        raise EnvError(
            f"env {name} does not follow slea's env contract (slea.envs.base):\n- "
            + "\n- ".join(problems)
        )
    return problems


def _contract_problems(
    env: Any, options: Mapping[str, Any] | None, seed: int, require_actions: bool
) -> list[str]:
    for method in ("reset", "step"):
        if not callable(getattr(env, method, None)):
            return [f"the env has no {method}() method (a gymnasium.Env has reset and step)"]
    where = f"reset(seed={seed}, options={dict(options or {})!r})"
    try:
        out = env.reset(seed=seed, options=dict(options or {}))
    except Exception as exc:
        return [f"{where} raised {type(exc).__name__}: {exc}"]
    if not (isinstance(out, tuple) and len(out) == 2):
        return [f"{where} must return (observation, info), got {out!r:.80}"]
    obs, info = out
    problems = []
    if not isinstance(obs, str):
        problems.append(f"{where}: the observation must be a str, got {type(obs).__name__}")
    problems += _check_info(info, where)
    actions = info.get("admissible_actions") if isinstance(info, Mapping) else None
    if require_actions and isinstance(actions, list | tuple) and not actions:
        problems.append(
            f"{where}: admissible_actions is empty; choice mode (policy.mode=choice) scores "
            "those actions, so list them (or use policy.mode=generate)"
        )
    action = str(actions[0]) if isinstance(actions, list | tuple) and actions else "look"
    where = f"step({action!r})"
    try:
        result = env.step(action)
    except Exception as exc:
        return [*problems, f"{where} raised {type(exc).__name__}: {exc}"]
    if not (isinstance(result, tuple) and len(result) == 5):
        return [
            *problems,
            f"{where} must return (observation, reward, terminated, truncated, info), "
            f"got {result!r:.80}",
        ]
    obs, reward, terminated, truncated, info = result
    if not isinstance(obs, str):
        problems.append(f"{where}: the observation must be a str, got {type(obs).__name__}")
    if not _type_ok(reward, "number"):
        problems.append(f"{where}: the reward must be a finite number, got {reward!r:.80}")
    for name, flag in (("terminated", terminated), ("truncated", truncated)):
        if not _type_ok(flag, "bool"):
            problems.append(f"{where}: {name} must be a bool, got {flag!r:.80}")
    return problems + _check_info(info, where)


def resolve_env_id(env_id: str, *, key: str = "env_id") -> str:
    """The registered id of ``env_id``: ``"module:EnvId"`` imports ``module`` first (as
    ``gymnasium.make`` does, so that importing it registers ``EnvId``) and gives ``EnvId``.

    Raises :class:`~slea.errors.EnvError` naming ``key`` when the module cannot be imported
    or the id is not registered.
    """
    if not isinstance(env_id, str) or not env_id:
        raise EnvError(f"{key}: must name a registered gymnasium environment, got {env_id!r}")
    register_envs()
    module, sep, name = env_id.rpartition(":")
    if sep:
        try:
            importlib.import_module(module)
        except Exception as exc:  # ImportError, or the module failed while running
            raise EnvError(
                f"{key}: {env_id!r}: module {module!r} could not be imported "
                f"({type(exc).__name__}: {exc}); install it or fix the module name (the form is "
                "module:EnvId, and importing the module must register EnvId)"
            ) from None
    if name not in gymnasium.registry:
        known = sorted(k for k in gymnasium.registry if k.startswith("slea/"))
        why = (
            f"importing {module!r} did not register it" if sep else "not registered with gymnasium"
        )
        raise EnvError(
            f"{key}: {env_id!r} is not a registered environment ({why}); use one of {known} "
            "(see `slea envs list`) or register yours with gymnasium.register"
        )
    return name


def check_task_options(
    make: Callable[[], Any], tasks: Sequence[Any], *, key: str, limit: int = 8
) -> None:
    """Reset an env from ``make()`` on a few of ``tasks`` (``slea.envs.tasks.Task``): the first,
    the last and the first of each distinct set of option keys (at most ``limit`` resets).

    Raises :class:`~slea.errors.EnvError` naming ``key``, the task and the env's complaint when
    a reset fails: options the env rejects are found before a run starts.
    """
    probes: dict[Any, Any] = {}
    for task in [*tasks[:1], *tasks[-1:]]:
        probes.setdefault(("end", task.name), task)
    for task in tasks:
        if len(probes) >= limit:
            break
        probes.setdefault(tuple(sorted(map(str, task.options))), task)
    env = make()
    try:
        for task in probes.values():
            try:
                env.reset(seed=0, options=dict(task.options))
            except Exception as exc:
                raise EnvError(
                    f"{key}: the env rejects task {task.name!r} (options {dict(task.options)!r}): "
                    f"{type(exc).__name__}: {exc}; fix the task's reset options"
                ) from None
    finally:
        env.close()


__all__ = [
    "OPTIONAL_INFO",
    "REQUIRED_INFO",
    "check_contract",
    "check_task_options",
    "resolve_env_id",
]
