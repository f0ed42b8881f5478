"""Environment throughput: ``python -m benches envs [--quick] [--only NAME,...] [--vector N]``.

For each env, the same random policy (a seeded choice among the admissible actions, episodes cut
at ``--horizon`` steps, cycling through the tasks) is played

* on the raw package (textworld / textworld's PddlEnv with ALFWorld's demangler / scienceworld),
  asking for the same information slea's env returns, and
* on slea's env through ``gymnasium.make`` (TimeLimit, order and passive checkers included),

alternating the two ``--repeat`` times; the best time of each gives the per-step cost and the
overhead ``slea / raw - 1`` (both sides include resets and game switches). "wrapper share" is
measured inside slea's own run: the part of ``env.step`` time spent outside the raw package's
``step`` (the cost of the wrapper alone, free of run-to-run noise). Sokoban has no third-party package: its "raw" row is slea's
own move function and grid renderer, so its overhead is the whole gymnasium wrapper. Then a
vector of ``--vector`` envs (``make_vec``, async processes and sync) is stepped in lock-step.
Steps per second include the resets. Results go to benches/out/envs.json.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benches.common import machine, table, write_json

ROOT = Path(__file__).resolve().parent.parent
ALFWORLD_DATA = ROOT / "tests" / "data" / "alfworld"


def _random_policy(seed: int) -> Callable[[list[str]], str]:
    rng = random.Random(seed)
    return lambda actions: actions[rng.randrange(len(actions))]


# -- one runner per (env, side): returns seconds for `steps` env steps ----------------------------
def _run_slea(
    make: Callable[[], Any],
    n_tasks: int,
    steps: int,
    horizon: int,
    inner: str | None = None,
) -> tuple[float, float | None]:
    """Seconds for ``steps`` steps of slea's env, and the share of ``env.step`` time spent
    outside the raw package's own step (``env.unwrapped.<inner>.step``), when ``inner`` is set."""
    env = make()
    pick = _random_policy(0)
    task = 0
    _, info = env.reset(options={"task_id": 0})
    inner_t = [0.0]
    stepping = [False]  # count the raw step only inside env.step (resets may call it too)
    if inner is not None:
        obj = getattr(env.unwrapped, inner)
        raw_step = obj.step

        def timed(*a: Any) -> Any:
            if not stepping[0]:
                return raw_step(*a)
            t = time.perf_counter()
            try:
                return raw_step(*a)
            finally:
                inner_t[0] += time.perf_counter() - t

        obj.step = timed
    step_t = 0.0
    t0 = time.perf_counter()
    done_steps, ep = 0, 0
    while done_steps < steps:
        action = pick(info["admissible_actions"])
        stepping[0] = True
        ts = time.perf_counter()
        _, _, terminated, truncated, info = env.step(action)
        step_t += time.perf_counter() - ts
        stepping[0] = False
        done_steps += 1
        ep += 1
        if terminated or truncated or ep >= horizon:
            task = (task + 1) % n_tasks
            _, info = env.reset(options={"task_id": task})
            ep = 0
    elapsed = time.perf_counter() - t0
    if inner is not None:
        del obj.step
    env.close()
    return elapsed, (1 - inner_t[0] / step_t if inner is not None else None)


def _textworld_raw(games: list[Path], description: bool) -> Callable[[int, int], float]:
    def run(steps: int, horizon: int) -> float:
        import warnings

        import textworld

        infos = textworld.EnvInfos(
            admissible_commands=True, max_score=True, objective=True, description=description
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not fully supported")
            env = textworld.start(str(games[0]), infos)
            pick = _random_policy(0)
            task = 0
            state = env.reset()
            t0 = time.perf_counter()
            done_steps, ep = 0, 0
            while done_steps < steps:
                state, _, done = env.step(pick(state["admissible_commands"]))
                done_steps += 1
                ep += 1
                if done or ep >= horizon:
                    task = (task + 1) % len(games)
                    env.load(str(games[task]))
                    state = env.reset()
                    ep = 0
            elapsed = time.perf_counter() - t0
        env.close()
        return elapsed

    return run


def _alfworld_raw(games: list[Path]) -> Callable[[int, int], float]:
    def run(steps: int, horizon: int) -> float:
        import textworld
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler
        from textworld.envs import PddlEnv

        env = AlfredDemangler(PddlEnv(textworld.EnvInfos(admissible_commands=True, won=True)))
        pick = _random_policy(0)
        task = 0
        env.load(str(games[0]))
        state = env.reset()
        t0 = time.perf_counter()
        done_steps, ep = 0, 0
        while done_steps < steps:
            state, _, done = env.step(pick(state["admissible_commands"]))
            done_steps += 1
            ep += 1
            if done or ep >= horizon:
                task = (task + 1) % len(games)
                env.load(str(games[task]))
                state = env.reset()
                ep = 0
        return time.perf_counter() - t0

    return run


def _scienceworld_raw(variations: list[int], ours: Any) -> Callable[[int, int], float]:
    def run(steps: int, horizon: int) -> float:
        env = ours._sw  # scienceworld.ScienceWorldEnv: the raw package object
        pick = _random_policy(0)
        task = 0
        env.load("find-non-living-thing", variations[0], "", True)
        _, info = env.reset()
        t0 = time.perf_counter()
        done_steps, ep = 0, 0
        while done_steps < steps:
            _, _, done, info = env.step(pick(info["valid"]))
            done_steps += 1
            ep += 1
            if done or ep >= horizon:
                task = (task + 1) % len(variations)
                env.load("find-non-living-thing", variations[task], "", True)
                _, info = env.reset()
                ep = 0
        return time.perf_counter() - t0

    return run


def _sokoban_raw(n_tasks: int) -> Callable[[int, int], float]:
    def run(steps: int, horizon: int) -> float:
        from slea.envs.sokoban import DIRECTIONS, SokobanEnv, move

        gen = SokobanEnv(num_levels=n_tasks)
        levels = [gen.level_for(i) for i in range(n_tasks)]
        pick = _random_policy(0)
        task = 0
        level = levels[0]
        boxes, player = level.boxes, level.player
        t0 = time.perf_counter()
        done_steps, ep = 0, 0
        while done_steps < steps:
            ok = [d for d in DIRECTIONS if move(level, boxes, player, d)[2] in ("moved", "pushed")]
            boxes, player, _ = move(level, boxes, player, pick(ok))
            level.render(boxes, player)
            done_steps += 1
            ep += 1
            if boxes == level.targets or ep >= horizon:
                task = (task + 1) % n_tasks
                level = levels[task]
                boxes, player = level.boxes, level.player
                ep = 0
        return time.perf_counter() - t0

    return run


# -- vector ---------------------------------------------------------------------------------------
def _vector_rate(env_id: str, n: int, mode: str, steps: int, horizon: int, **kwargs: Any) -> dict:
    from slea.envs import make_vec

    t_start = time.perf_counter()
    venv = make_vec(env_id, n, mode=mode, max_episode_steps=horizon, **kwargs)
    num_tasks = venv.get_attr("num_tasks")[0]
    startup = time.perf_counter() - t_start
    picks = [_random_policy(i) for i in range(n)]
    counter = 0

    def next_tasks(mask: Any) -> list[dict[str, int] | None]:
        nonlocal counter
        out: list[dict[str, int] | None] = []
        for m in mask:
            out.append({"task_id": counter % num_tasks} if m else None)
            counter += int(m)
        return out

    import numpy as np

    _, infos = venv.reset(options={"env_options": next_tasks([True] * n)})
    admissible = list(infos["admissible_actions"])
    t0 = time.perf_counter()
    done_steps = 0
    while done_steps < steps:
        active = venv.active
        actions = [picks[i](admissible[i]) if active[i] else "" for i in range(n)]
        _, _, _, _, infos = venv.step(actions)
        done_steps += int(active.sum())
        for i in np.flatnonzero(infos.get("_admissible_actions", np.zeros(n, bool))):
            admissible[i] = infos["admissible_actions"][i]
        if not venv.active.all():
            mask = ~venv.active
            _, infos = venv.reset(options={"reset_mask": mask, "env_options": next_tasks(mask)})
            for i in np.flatnonzero(mask):
                admissible[i] = infos["admissible_actions"][i]
    elapsed = time.perf_counter() - t0
    venv.close()
    return {"steps_per_s": done_steps / elapsed, "startup_s": startup}


# -- driver ---------------------------------------------------------------------------------------
def _compare(
    name: str,
    raw: Callable[[int, int], float],
    ours: Callable[[int, int], tuple[float, float | None]],
    steps: int,
    horizon: int,
    repeat: int,
    note: str = "",
) -> dict[str, Any]:
    raw_t, our_t, shares = [], [], []
    for _ in range(repeat):  # alternate so that load changes hit both sides alike
        raw_t.append(raw(steps, horizon))
        elapsed, share = ours(steps, horizon)
        our_t.append(elapsed)
        if share is not None:
            shares.append(share)
    best_raw, best_ours = min(raw_t), min(our_t)
    paired = sorted(o / r for o, r in zip(our_t, raw_t, strict=True))
    row = {
        "env": name,
        "raw steps/s": steps / best_raw,
        "slea steps/s": steps / best_ours,
        "overhead": f"{best_ours / best_raw - 1:+.1%}",
        "median paired": f"{paired[len(paired) // 2] - 1:+.1%}",
        "wrapper share": f"{sorted(shares)[len(shares) // 2]:.1%}" if shares else "n/a",
        "ms/step raw": 1e3 * best_raw / steps,
        "ms/step slea": 1e3 * best_ours / steps,
        "note": note,
    }
    print(
        f"  {name}: raw {row['raw steps/s']:.1f}/s, slea {row['slea steps/s']:.1f}/s, overhead {row['overhead']}"
    )
    return row


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches envs", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke run)")
    parser.add_argument("--only", default="textworld,alfworld,scienceworld,sokoban")
    parser.add_argument("--vector", type=int, default=8, help="envs in the vector (default 8)")
    parser.add_argument("--repeat", type=int, default=5, help="alternating rounds per side")
    parser.add_argument("--horizon", type=int, default=15, help="episode cut (steps)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    only = set(args.only.split(","))
    scale = 0.25 if args.quick else 1.0
    repeat = 2 if args.quick else args.repeat
    single: list[dict[str, Any]] = []
    vector: list[dict[str, Any]] = []
    import gymnasium

    import slea.envs

    slea.envs.register_envs()
    print(f"machine: {machine()}")

    if "textworld" in only:
        from slea.envs.textworld import make_games

        games = make_games(None, 8, seed=0, kind="coin", level=3, split="train")
        steps = int(1500 * scale)
        for desc in (False, True):
            label = "TextWorld cc3" + (" +description" if desc else "")

            def ours(s: int, h: int, desc: bool = desc) -> tuple[float, float | None]:
                return _run_slea(
                    lambda: gymnasium.make(
                        "slea/TextWorld-v0", games=games, include_description=desc
                    ),
                    len(games),
                    s,
                    h,
                    inner="_tw",
                )

            note = (
                "raw asks textworld for the description every step; slea caches it per state"
                if desc
                else "same information on both sides"
            )
            single.append(
                _compare(
                    label, _textworld_raw(games, desc), ours, steps, args.horizon, repeat, note
                )
            )
        vec_steps = int(3000 * scale)
        for mode in ("async", "sync"):
            r = _vector_rate(
                "slea/TextWorld-v0", args.vector, mode, vec_steps, args.horizon, games=games
            )
            vector.append({"env": "TextWorld cc3", "mode": mode, "n": args.vector, **r})
            print(f"  TextWorld vector {mode}: {r['steps_per_s']:.1f} steps/s")

    if "alfworld" in only:
        from slea.envs.alfworld import find_games

        games = find_games(ALFWORLD_DATA, "train")
        steps = int(300 * scale)

        def alf(s: int, h: int) -> tuple[float, float | None]:
            return _run_slea(
                lambda: gymnasium.make("slea/ALFWorld-v0", games=games),
                len(games),
                s,
                h,
                inner="_env",
            )

        single.append(
            _compare(
                "ALFWorld (test games)",
                _alfworld_raw(games),
                alf,
                steps,
                args.horizon,
                repeat,
                "slea's tests/data games (no ALFWorld data here); raw = PddlEnv + AlfredDemangler",
            )
        )
        r = _vector_rate(
            "slea/ALFWorld-v0", args.vector, "async", int(600 * scale), args.horizon, games=games
        )
        vector.append({"env": "ALFWorld (test games)", "mode": "async", "n": args.vector, **r})
        print(f"  ALFWorld vector async: {r['steps_per_s']:.1f} steps/s")

    if "scienceworld" in only:
        variations = [0, 1, 2]
        steps = int(80 * scale)
        sw_env = gymnasium.make(
            "slea/ScienceWorld-v0", task_name="find-non-living-thing", variations=variations
        )
        raw = _scienceworld_raw(variations, sw_env.unwrapped)  # the same JVM on both sides

        def sw(s: int, h: int) -> tuple[float, float | None]:
            sw_env.unwrapped._loaded = None  # the raw side loaded other variations
            return _run_slea(lambda: _NoClose(sw_env), len(variations), s, h, inner="_sw")

        single.append(
            _compare(
                "ScienceWorld find-non-living-thing",
                raw,
                sw,
                steps,
                args.horizon,
                max(2, repeat // 2),
                "JVM start excluded; variations 0-2",
            )
        )
        sw_env.close()
        r = _vector_rate(
            "slea/ScienceWorld-v0",
            args.vector,
            "async",
            int(160 * scale),
            args.horizon,
            task_name="find-non-living-thing",
            variations=variations,
        )
        vector.append({"env": "ScienceWorld", "mode": "async", "n": args.vector, **r})
        print(f"  ScienceWorld vector async: {r['steps_per_s']:.1f} steps/s")

    if "sokoban" in only:
        steps = int(20000 * scale)

        def sok(s: int, h: int) -> tuple[float, float | None]:
            return _run_slea(lambda: gymnasium.make("slea/Sokoban-v0", num_levels=50), 50, s, h)

        single.append(
            _compare(
                "Sokoban 7x7, 2 boxes",
                _sokoban_raw(50),
                sok,
                steps,
                args.horizon,
                repeat,
                "raw = slea's own move+render (no package): the overhead is the gym wrapper",
            )
        )
        for mode in ("async", "sync"):
            r = _vector_rate(
                "slea/Sokoban-v0",
                args.vector,
                mode,
                int(20000 * scale),
                args.horizon,
                num_levels=50,
            )
            vector.append({"env": "Sokoban 7x7", "mode": mode, "n": args.vector, **r})
            print(f"  Sokoban vector {mode}: {r['steps_per_s']:.1f} steps/s")

    cols = [
        "env",
        "raw steps/s",
        "slea steps/s",
        "overhead",
        "median paired",
        "wrapper share",
        "note",
    ]
    print()
    print(table(single, cols))
    print()
    print(table(vector, ["env", "mode", "n", "steps_per_s", "startup_s"]))
    path = write_json(
        "envs",
        {
            "command": "python -m benches envs " + " ".join(argv),
            "single": single,
            "vector": vector,
            "horizon": args.horizon,
            "repeat": repeat,
        },
    )
    print(f"\nwrote {path}")
    return 0


class _NoClose:
    """Lets the ScienceWorld env (one JVM) be reused across rounds."""

    def __init__(self, env: Any) -> None:
        self._env = env

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)

    def close(self) -> None:
        pass
