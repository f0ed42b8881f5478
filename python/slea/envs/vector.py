"""Vector envs for lock-step rollouts, with crash recovery: ``make_vec`` and ``SleaVectorEnv``.

``SleaVectorEnv`` is a ``gymnasium.vector.VectorEnv`` built for the rollout collector, which runs
B tasks x G rollouts in lock-step and stops stepping an episode once it has ended:

* **No autoreset** (``metadata["autoreset_mode"] == AutoresetMode.DISABLED``). An env whose
  episode ended stays ended until you reset it. ``step`` skips it: its action is ignored (pass
  any value, e.g. ``""``), and it returns its last observation, reward 0.0,
  ``terminated = truncated = False`` and no ``info`` entries (the info masks are False). So
  ``terminated``/``truncated`` are True exactly once per episode, on the step that ends it, and
  ``venv.active`` tells which episodes still run. ``set_idle(indices)`` ends episodes on the
  vector's side without stepping them (the collector idles the envs it has no episode for).
* **Per-env tasks.** ``reset(seed=..., options={"env_options": [opts_0, ..., opts_{n-1}]})``
  resets env i with ``opts_i`` (e.g. ``{"task_id": 3}`` or ``{"game": path}``); other keys of
  ``options`` go to every env, and ``options={"reset_mask": mask}`` resets only the envs where
  ``mask`` is True (gymnasium's convention). ``seed`` may be an int (env i gets ``seed + i``) or
  a list with one seed (or None) per env.
* **Crash recovery.** If a worker dies (process killed, env exception in ``step``, or no reply
  within ``step_timeout`` seconds), it is restarted (a fresh process and env), its episode ends
  as truncated with ``info["env_error"]`` describing the failure (reward 0.0, last observation),
  and the other envs carry on. The restarted env needs a ``reset`` (the collector resets every
  env at the start of each round). A worker that fails ``max_restarts`` times raises ``EnvError``.
  A failure during ``reset`` (the worker dies, or ``reset`` raises anything but ``ValueError`` /
  ``TypeError``) restarts the worker and retries once; if the retry fails too, its exception is
  raised in the caller (the worker restarted again). A ``ValueError`` or ``TypeError`` from
  ``reset`` is an argument mistake (a bad option, say): it is raised in the caller at once, with
  the remote traceback, and the env is left as it was.

Observations come back as a tuple of ``num_envs`` strings; rewards, terminations and truncations
as numpy arrays of shape ``(num_envs,)`` (float64 / bool / bool). ``infos`` is gymnasium's dict of
arrays with ``_key`` masks; ``unbatch_infos(infos, n)`` turns it into a list of per-env dicts.

``mode="async"`` runs each env in its own process (``forkserver`` start method by default: safe
with a parent that runs torch threads), ``mode="sync"`` runs them in this process one after the
other, with the same API and the same recovery: an exception an env raises in ``step`` or
``reset`` (``SystemExit`` included; ``KeyboardInterrupt`` is not caught) is handled as a worker
death in ``async`` mode, the env being rebuilt in place. What ``sync`` cannot survive is an env
that kills or hangs the process itself (a segfaulting game engine, an endless loop):
``step_timeout`` applies to ``async`` only.
"""

from __future__ import annotations

import multiprocessing as mp
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from slea.envs.check import resolve_env_id
from slea.envs.registry import ENVS, register_envs
from slea.errors import EnvError

MODES = ("async", "sync")


class EnvFactory:
    """Picklable ``gymnasium.make(env_id, **kwargs)``, usable in worker processes."""

    def __init__(self, env_id: str, kwargs: dict[str, Any] | None = None) -> None:
        self.env_id = env_id
        self.kwargs = dict(kwargs or {})

    def __call__(self) -> gymnasium.Env[Any, Any]:
        register_envs()  # a fresh worker process may not have imported slea yet
        return gymnasium.make(self.env_id, **self.kwargs)

    def __repr__(self) -> str:
        return f"EnvFactory({self.env_id!r}, {self.kwargs!r})"


class WorkerDied(Exception):
    """A worker stopped answering (died, was killed, or timed out)."""


def _pack_error(exc: BaseException) -> tuple[BaseException, str]:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        import pickle

        pickle.dumps(exc)
        return exc, tb
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}"), tb


def _run_command(env: Any, cmd: str, args: tuple[Any, ...]) -> Any:
    if cmd == "reset":
        return env.reset(seed=args[0], options=args[1])
    if cmd == "step":
        return env.step(args[0])
    if cmd == "call":
        name, a, kw = args
        attr = env.get_wrapper_attr(name)
        return attr(*a, **kw) if callable(attr) else attr
    if cmd == "set_attr":
        env.set_wrapper_attr(args[0], args[1])
        return None
    raise ValueError(f"unknown worker command {cmd!r}")


def _worker_main(conn: Any, factory: Callable[[], Any]) -> None:
    """Body of a worker process: build the env, then answer commands until 'close'."""
    try:
        env = factory()
    except BaseException as exc:
        conn.send(("error", _pack_error(exc)))
        conn.close()
        return
    conn.send(("ok", None))
    while True:
        try:
            cmd, args = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            break
        if cmd == "close":
            try:
                env.close()
            finally:
                conn.send(("ok", None))
            break
        try:
            result = ("ok", _run_command(env, cmd, args))
        except BaseException as exc:
            result = ("error", _pack_error(exc))
        try:
            conn.send(result)
        except Exception as exc:  # unpicklable result
            conn.send(("error", _pack_error(exc)))
    conn.close()


class _ProcessWorker:
    """An env in a child process, talked to over a pipe."""

    def __init__(self, factory: Callable[[], Any], ctx: Any) -> None:
        self.factory = factory
        self.ctx = ctx
        self.process: Any = None
        self.conn: Any = None
        self.start()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self) -> None:
        parent, child = self.ctx.Pipe()
        self.process = self.ctx.Process(
            target=_worker_main, args=(child, self.factory), daemon=True
        )
        self.process.start()
        child.close()
        self.conn = parent

    def send(self, cmd: str, *args: Any) -> None:
        try:
            self.conn.send((cmd, args))
        except (BrokenPipeError, EOFError, OSError) as exc:
            raise WorkerDied(self._death_reason()) from exc

    def recv(self, timeout: float | None) -> tuple[str, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            wait = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            try:
                if self.conn.poll(wait):
                    return self.conn.recv()
            except (EOFError, OSError) as exc:
                raise WorkerDied(self._death_reason()) from exc
            if not self.process.is_alive():
                raise WorkerDied(self._death_reason())
            if deadline is not None and time.monotonic() >= deadline:
                raise WorkerDied(f"no reply within {timeout} s")

    def _death_reason(self) -> str:
        self.process.join(0.5)
        code = self.process.exitcode
        if code is None:
            return "worker pipe closed"
        if code < 0:
            return f"worker process died (signal {-code})"
        return f"worker process exited (code {code})"

    def kill(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.process.kill()
        if self.process is not None:
            self.process.join(5)
        if self.conn is not None:
            self.conn.close()

    def restart(self) -> None:
        self.kill()
        self.start()

    def close(self, timeout: float = 5.0) -> None:
        if self.process is None:
            return
        try:
            if self.process.is_alive():
                self.conn.send(("close", ()))
                if self.conn.poll(timeout):
                    self.conn.recv()
        except (BrokenPipeError, EOFError, OSError):
            pass
        self.process.join(timeout)
        self.kill()
        self.process = None


class _LocalWorker:
    """An env in this process with the same interface (``mode="sync"``)."""

    pid = None

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.factory = factory
        self.env: Any = None
        self._result: tuple[str, Any] = ("ok", None)
        self.start()

    def start(self) -> None:
        try:
            self.env = self.factory()
            self._result = ("ok", None)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:
            self.env = None
            self._result = ("error", _pack_error(exc))

    def send(self, cmd: str, *args: Any) -> None:
        if self.env is None:
            raise WorkerDied("env is not running")
        try:
            self._result = ("ok", _run_command(self.env, cmd, args))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit too: a worker process would survive it
            self._result = ("error", _pack_error(exc))

    def recv(self, timeout: float | None) -> tuple[str, Any]:
        return self._result

    def restart(self) -> None:
        self.close()
        self.start()

    def close(self, timeout: float = 5.0) -> None:
        if self.env is not None:
            try:
                self.env.close()
            except Exception:
                pass
            self.env = None


def _raise_remote(payload: tuple[BaseException, str], context: str) -> None:
    exc, tb = payload
    if hasattr(exc, "add_note"):
        exc.add_note(f"{context}; remote traceback:\n{tb}")
    raise exc


class SleaVectorEnv(VectorEnv[Any, Any, Any]):
    """Lock-step vector of slea text envs; see the module docstring for the semantics.

    Args:
        env_fns: one zero-argument callable per env that builds it (picklable for ``async``;
            :class:`EnvFactory` is).
        mode: ``"async"`` (a process per env) or ``"sync"`` (all in this process).
        step_timeout: seconds to wait for one env's reply (step, reset, call) before declaring
            it dead and restarting it (None: wait forever; ``async`` only). Default 300.
        max_restarts: restarts allowed per worker before ``EnvError``.
        context: multiprocessing start method for ``async`` (default ``"forkserver"`` where
            available, else ``"spawn"``).
        preload: modules the forkserver imports once, so that new workers start fast.
    """

    metadata = {"autoreset_mode": AutoresetMode.DISABLED}  # noqa: RUF012

    def __init__(
        self,
        env_fns: Sequence[Callable[[], Any]],
        *,
        mode: str = "async",
        step_timeout: float | None = 300.0,
        max_restarts: int = 10,
        context: str | None = None,
        preload: Sequence[str] = (),
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not env_fns:
            raise ValueError("env_fns is empty: a vector env needs at least one env")
        if step_timeout is not None and step_timeout <= 0:
            raise ValueError(f"step_timeout must be > 0 or None, got {step_timeout}")
        if max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {max_restarts}")
        self.num_envs = len(env_fns)
        self.mode = mode
        self.step_timeout = step_timeout
        self.max_restarts = max_restarts
        self.restarts = [0] * self.num_envs
        self._workers: list[Any] = []
        self.closed = False
        if mode == "async":
            if context is None:
                context = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
            ctx = mp.get_context(context)
            if context == "forkserver":
                ctx.set_forkserver_preload(["slea.envs.vector", *preload])
            self._workers = [_ProcessWorker(fn, ctx) for fn in env_fns]
        else:
            self._workers = [_LocalWorker(fn) for fn in env_fns]
        errors = []
        for i, w in enumerate(self._workers):
            try:
                status, payload = w.recv(None)
            except WorkerDied as exc:
                status, payload = "error", (EnvError(f"worker {i} died at start: {exc}"), "")
            if status != "ok":
                errors.append((i, payload))
        if errors:
            self.close()
            i, payload = errors[0]
            _raise_remote(payload, f"building env {i} failed")
        spaces = (
            self._call_one(0, "call", "observation_space", (), {}),
            self._call_one(0, "call", "action_space", (), {}),
        )
        self.single_observation_space, self.single_action_space = spaces
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self._obs: list[str] = [""] * self.num_envs
        self._last_info: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        self._active = np.zeros(self.num_envs, dtype=bool)

    # -- properties ---------------------------------------------------------------------------
    @property
    def active(self) -> np.ndarray:
        """Bool array ``(num_envs,)``: True where an episode is running (reset, not yet ended)."""
        return self._active.copy()

    def set_idle(self, indices: Sequence[int]) -> None:
        """Treat the episodes of these envs as ended: ``step`` skips them until their next reset.

        The envs themselves are not touched. Raises ``IndexError`` for an index out of range
        (and then changes nothing).
        """
        idx = [int(i) for i in indices]
        bad = [i for i in idx if not 0 <= i < self.num_envs]
        if bad:
            raise IndexError(f"set_idle: env index {bad[0]} out of range 0..{self.num_envs - 1}")
        self._active[idx] = False

    @property
    def worker_pids(self) -> list[int | None]:
        """Process ids of the workers (None in ``sync`` mode)."""
        return [w.pid for w in self._workers]

    # -- gymnasium API ------------------------------------------------------------------------
    def reset(
        self,
        *,
        seed: int | Sequence[int | None] | None = None,
        options: dict[str, Any] | None = None,
    ) -> tuple[tuple[str, ...], dict[str, Any]]:
        """Reset the envs (all, or those in ``options["reset_mask"]``); see the module doc.

        Returns ``(observations, infos)``: a tuple of ``num_envs`` strings (envs not reset keep
        their current observation) and gymnasium's batched info dict (entries for reset envs).
        """
        self._check_open()
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        mask = np.ones(self.num_envs, bool) if mask is None else np.asarray(mask, dtype=bool)
        if mask.shape != (self.num_envs,):
            raise ValueError(f"options['reset_mask'] must have shape ({self.num_envs},)")
        env_options = options.pop("env_options", None)
        if env_options is None:
            env_options = [None] * self.num_envs
        if len(env_options) != self.num_envs:
            raise ValueError(f"options['env_options'] must have {self.num_envs} entries")
        if seed is None or isinstance(seed, int | np.integer):
            seeds = [None if seed is None else int(seed) + i for i in range(self.num_envs)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_envs:
                raise ValueError(f"seed must be an int or a list of {self.num_envs} seeds")
        if seed is not None:
            first = seeds[0] if not isinstance(seed, int | np.integer) else int(seed)
            self._np_random, self._np_random_seed = gymnasium.utils.seeding.np_random(first)
        per_env = [{**options, **(env_options[i] or {})} for i in range(self.num_envs)]
        indices = [i for i in range(self.num_envs) if mask[i]]
        results = self._broadcast(indices, lambda i: ("reset", seeds[i], per_env[i] or None))
        infos: dict[str, Any] = {}
        failures = []
        for i in indices:
            status, payload = results[i]
            if _crashed(status, payload):  # restart and try once more
                status, payload = self._reset_again(
                    i, _reason(status, payload), seeds[i], per_env[i]
                )
            if status != "ok":
                failures.append((i, payload))
                self._active[i] = False
                continue
            obs, info = payload
            self._obs[i] = obs
            self._last_info[i] = info
            self._active[i] = True
            infos = self._add_info(infos, info, i)
        if failures:
            i, payload = failures[0]
            _raise_remote(payload, f"reset of env {i} failed")
        return tuple(self._obs), infos

    def step(
        self, actions: Sequence[Any]
    ) -> tuple[tuple[str, ...], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every running env with its action (actions of ended episodes are ignored).

        Returns ``(observations, rewards, terminations, truncations, infos)`` with shapes
        ``(num_envs,)``; a crashed env ends truncated with ``info["env_error"]``.
        """
        self._check_open()
        actions = list(actions)
        if len(actions) != self.num_envs:
            raise ValueError(f"step needs {self.num_envs} actions, got {len(actions)}")
        indices = [i for i in range(self.num_envs) if self._active[i]]
        for i in indices:
            if not isinstance(actions[i], str):
                raise TypeError(f"action {i} must be a str, got {type(actions[i]).__name__}")
        results = self._broadcast(indices, lambda i: ("step", actions[i]))
        rewards = np.zeros(self.num_envs, dtype=np.float64)
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        infos: dict[str, Any] = {}
        for i in indices:
            status, payload = results[i]
            if status == "ok":
                obs, reward, term, trunc, info = payload
                self._obs[i] = obs
                rewards[i], terminated[i], truncated[i] = reward, term, trunc
                self._last_info[i] = info
            else:
                reason = _reason(status, payload)
                self._restart(i, reason)
                info = self._crash_info(i, reason)
                truncated[i] = True
            if terminated[i] or truncated[i]:
                self._active[i] = False
            infos = self._add_info(infos, info, i)
        return tuple(self._obs), rewards, terminated, truncated, infos

    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call method ``name`` (or read attribute ``name``) on every env; a tuple of results."""
        self._check_open()
        results = self._broadcast(range(self.num_envs), lambda i: ("call", name, args, kwargs))
        out = []
        for i in range(self.num_envs):
            status, payload = results[i]
            if status == "died":
                self._restart(i, payload)
                raise EnvError(f"env {i} died during call({name!r}): {payload}")
            if status != "ok":
                _raise_remote(payload, f"call({name!r}) on env {i} failed")
            out.append(payload)
        return tuple(out)

    def call_at(self, index: int, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call method ``name`` (or read attribute ``name``) on env ``index`` only."""
        self._check_open()
        self._check_index(index)
        return self._call_one(index, "call", name, args, kwargs)

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """Attribute ``name`` of every env."""
        return self.call(name)

    def set_attr(self, name: str, values: Any) -> None:
        """Set attribute ``name`` on every env (one value for all, or a list of num_envs)."""
        self._check_open()
        if not isinstance(values, list | tuple):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise ValueError(f"values must have {self.num_envs} entries")
        for i, value in enumerate(values):
            self._call_one(i, "set_attr", name, value)

    def restore_state(self, index: int, state: Any) -> tuple[str, dict[str, Any]]:
        """Run ``env.restore_state(state)`` on env ``index`` (for envs that have it, e.g.
        Sokoban) and make that episode active again. Returns ``(observation, info)``."""
        self._check_open()
        self._check_index(index)
        obs, info = self._call_one(index, "call", "restore_state", (state,), {})
        self._obs[index] = obs
        self._last_info[index] = info
        self._active[index] = not info.get("won", False)
        return obs, info

    def render(self) -> tuple[Any, ...] | None:
        """The renders of the envs (``env.render()`` of each)."""
        return self.call("render")

    def close_extras(self, **kwargs: Any) -> None:
        """Stop the workers (asks each to close its env, then kills stragglers)."""
        for w in self._workers:
            try:
                w.close()
            except Exception:
                pass

    def __del__(self) -> None:
        try:
            if not getattr(self, "closed", True):
                self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"SleaVectorEnv(num_envs={self.num_envs}, mode={self.mode!r})"

    # -- internals ----------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self.closed:
            raise EnvError("the vector env is closed")

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.num_envs:
            raise IndexError(f"index must be in [0, {self.num_envs}), got {index}")

    def _broadcast(
        self, indices: Sequence[int] | range, command: Callable[[int], tuple[Any, ...]]
    ) -> dict[int, tuple[str, Any]]:
        """Send one command to each env in ``indices``, then collect every reply.

        Replies are ``("ok", result)``, ``("error", (exc, traceback))`` for an exception in the
        env, or ``("died", reason)`` when the worker is gone.
        """
        results: dict[int, tuple[str, Any]] = {}
        sent = []
        for i in indices:
            try:
                self._workers[i].send(*command(i))
                sent.append(i)
            except WorkerDied as exc:
                results[i] = ("died", str(exc))
        for i in sent:
            try:
                results[i] = self._workers[i].recv(self.step_timeout)
            except WorkerDied as exc:
                results[i] = ("died", str(exc))
        return results

    def _call_one(self, index: int, cmd: str, *args: Any) -> Any:
        results = self._broadcast([index], lambda i: (cmd, *args))
        status, payload = results[index]
        if status == "died":
            self._restart(index, payload)
            raise EnvError(f"env {index} died during {cmd}: {payload}")
        if status != "ok":
            _raise_remote(payload, f"{cmd} on env {index} failed")
        return payload

    def _restart(self, index: int, reason: str) -> None:
        self.restarts[index] += 1
        self._active[index] = False
        if self.restarts[index] > self.max_restarts:
            raise EnvError(
                f"env {index} failed {self.restarts[index]} times (last: {reason}); "
                f"giving up (max_restarts={self.max_restarts})"
            )
        worker = self._workers[index]
        worker.restart()
        status, payload = worker.recv(None)
        if status != "ok":
            _raise_remote(payload, f"restarting env {index} failed")

    def _reset_again(
        self, index: int, reason: str, seed: int | None, options: dict[str, Any]
    ) -> tuple[str, Any]:
        """Rebuild env ``index`` after a crash in ``reset`` and reset it once more; returns the
        reply (a second crash restarts the env again and comes back as an ``"error"``)."""
        self._restart(index, reason)
        try:
            self._workers[index].send("reset", seed, options or None)
            status, payload = self._workers[index].recv(self.step_timeout)
        except WorkerDied as exc:
            status, payload = "died", str(exc)
        if _crashed(status, payload):
            again = _reason(status, payload)
            self._restart(index, again)
            if status == "died":
                twice = EnvError(f"env {index} died twice in reset: {reason}; then {again}")
                payload = (twice, "")
            status = "error"
        return status, payload

    def _crash_info(self, index: int, reason: str) -> dict[str, Any]:
        info = dict(self._last_info[index])
        info.update(won=False, invalid_action=False, admissible_actions=[])
        info["env_error"] = f"env {index}: {reason}; worker restarted, episode truncated"
        return info


def _describe(payload: tuple[BaseException, str]) -> str:
    exc = payload[0]
    return f"{type(exc).__name__}: {exc}"


def _crashed(status: str, payload: Any) -> bool:
    """A worker reply that means the env crashed: the worker died, or the env raised anything
    but an argument mistake (``ValueError`` / ``TypeError``)."""
    if status == "died":
        return True
    return status == "error" and not isinstance(payload[0], ValueError | TypeError)


def _reason(status: str, payload: Any) -> str:
    return str(payload) if status == "died" else _describe(payload)


def unbatch_infos(infos: dict[str, Any], num_envs: int) -> list[dict[str, Any]]:
    """Per-env info dicts from gymnasium's batched ``infos`` (keys whose ``_key`` mask is set)."""
    out: list[dict[str, Any]] = [{} for _ in range(num_envs)]
    for key, values in infos.items():
        if key.startswith("_"):
            continue
        mask = infos.get(f"_{key}")
        if isinstance(values, dict):
            for i, sub in enumerate(unbatch_infos(values, num_envs)):
                if sub:
                    out[i][key] = sub
            continue
        for i in range(num_envs):
            if mask is None or mask[i]:
                v = values[i]
                out[i][key] = v.item() if isinstance(v, np.generic) else v
    return out


def make_vec(
    env_id: str,
    num_envs: int,
    *,
    mode: str = "async",
    step_timeout: float | None = 300.0,
    max_restarts: int = 10,
    context: str | None = None,
    **kwargs: Any,
) -> SleaVectorEnv:
    """A :class:`SleaVectorEnv` of ``num_envs`` copies of ``gymnasium.make(env_id, **kwargs)``.

    Args:
        env_id: a registered id (``slea envs list``).
        num_envs: number of envs (>= 1), e.g. B tasks x G rollouts.
        mode: ``"async"`` (a worker process per env) or ``"sync"`` (all in this process; on a
            2-core machine often the faster choice for TextWorld).
        step_timeout: seconds without a reply before a worker is declared dead and restarted.
        max_restarts: restarts per worker before ``EnvError``.
        context: multiprocessing start method (default ``forkserver``).
        **kwargs: passed to ``gymnasium.make`` in every worker (``max_episode_steps`` included).

    Each env picks its task at ``reset`` (``options={"env_options": [{"task_id": i}, ...]}``).
    See the module docstring for autoreset (disabled), crash recovery and the return shapes.
    """
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
    name = resolve_env_id(env_id)  # "module:EnvId" imports module; the workers' make does too
    preload: list[str] = []
    entry = ENVS.get(name)
    if entry is not None:  # the forkserver imports these once; workers fork ready to go
        preload = [entry.entry_point.split(":")[0], *entry.requires]
    factory = EnvFactory(env_id, kwargs)
    return SleaVectorEnv(
        [factory] * num_envs,
        mode=mode,
        step_timeout=step_timeout,
        max_restarts=max_restarts,
        context=context,
        preload=preload,
    )
