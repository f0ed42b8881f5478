"""Environment throughput: ``python -m benches envs [--quick] [--only NAME,...] [--vector N]``.

Single env, paired in lock-step. For each env, two copies play the *same* episodes side by side:

* ``raw``: the package itself (textworld; textworld's PddlEnv with ALFWorld's own demangler;
  scienceworld), asked for the same information slea's env returns;
* ``slea``: slea's env through ``gymnasium.make`` (TimeLimit, order and passive checkers on).

Both start every episode on the same task (cycling through the tasks), receive the same action at
every step (a seeded random choice among the admissible actions) and the benchmark checks that
they stay in sync (same admissible actions, same end of episode). Each call is timed on its own
and the two sides alternate call by call, so the load of a shared machine hits both alike; this is
what makes the ratio trustworthy on a busy 2-core box. ``overhead`` = slea time / raw time - 1
over all calls (resets and game switches included), ``step overhead`` the same for ``step`` calls
only. The median over ``--repeat`` passes is reported (the first, warm-up pass is dropped).
``wrapper share``: within slea's own side, the share of ``env.step`` time spent outside the
package's own ``step`` call, which is free of side-to-side noise.
Sokoban has no third-party package: its ``raw`` side is slea's own move function and grid
renderer, so its overhead is the whole gymnasium env layer.

Vector: ``make_vec`` with ``--vector`` envs (async processes and sync) stepped in lock-step with
random admissible actions, finished envs reset through ``reset_mask``; aggregate env steps/s.
Results go to benches/out/envs.json.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benches.common import machine, table, write_json

ROOT = Path(__file__).resolve().parent.parent
ALFWORLD_DATA = ROOT / "tests" / "data" / "alfworld"


def _random_policy(seed: int) -> Callable[[list[str]], str]:
    rng = random.Random(seed)
    return lambda actions: actions[rng.randrange(len(actions))]


# -- the two sides: reset(task) -> admissible actions; step(action) -> (admissible, done) ---------
class _Slea:
    """slea's env; with ``inner`` set, also times the package's own ``step`` inside ``env.step``
    (``env.unwrapped.<inner>.step``) to give the wrapper's share of the step time."""

    def __init__(self, env: Any, inner: str | None = None) -> None:
        self.env = env
        self.inner = inner
        self.inner_t = self.step_t = 0.0
        self._stepping = False

    def _wrap_inner(self) -> None:
        obj = getattr(self.env.unwrapped, self.inner or "", None)
        if obj is None or "step" in vars(obj):
            return
        raw_step = obj.step

        def timed(*a: Any) -> Any:
            if not self._stepping:  # resets may call the package's step too
                return raw_step(*a)
            t = time.perf_counter()
            try:
                return raw_step(*a)
            finally:
                self.inner_t += time.perf_counter() - t

        obj.step = timed

    def reset(self, task: int) -> list[str]:
        adm = self.env.reset(options={"task_id": task})[1]["admissible_actions"]
        if self.inner:
            self._wrap_inner()  # the package object may be created (or replaced) at reset
        return adm

    def step(self, action: str) -> tuple[list[str], bool]:
        self._stepping = True
        t = time.perf_counter()
        _, _, terminated, truncated, info = self.env.step(action)
        self.step_t += time.perf_counter() - t
        self._stepping = False
        return info["admissible_actions"], terminated or truncated

    def share(self) -> float | None:
        """Share of ``env.step`` time spent outside the package's step (None if not timed)."""
        return 1 - self.inner_t / self.step_t if self.inner and self.step_t else None

    def close(self) -> None:
        self.env.close()


class _TextWorldRaw:
    def __init__(self, games: list[Path], description: bool) -> None:
        import textworld

        infos = textworld.EnvInfos(
            admissible_commands=True, max_score=True, objective=True, description=description
        )
        self.games = games
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not fully supported")
            self.env = textworld.start(str(games[0]), infos)

    def reset(self, task: int) -> list[str]:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not fully supported")
            self.env.load(str(self.games[task]))
        return self.env.reset()["admissible_commands"]

    def step(self, action: str) -> tuple[list[str], bool]:
        state, _, done = self.env.step(action)
        return state["admissible_commands"], done

    def close(self) -> None:
        self.env.close()


class _ALFWorldRaw:
    def __init__(self, games: list[Path]) -> None:
        import textworld
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler
        from textworld.envs import PddlEnv

        self.games = games
        self.env = AlfredDemangler(PddlEnv(textworld.EnvInfos(admissible_commands=True, won=True)))

    def reset(self, task: int) -> list[str]:
        self.env.load(str(self.games[task]))
        return self.env.reset()["admissible_commands"]

    def step(self, action: str) -> tuple[list[str], bool]:
        state, _, done = self.env.step(action)
        return state["admissible_commands"], done

    def close(self) -> None:
        pass


class _ScienceWorldRaw:
    def __init__(self, task: str, variations: list[int]) -> None:
        from scienceworld import ScienceWorldEnv

        self.task, self.variations = task, variations
        self.env = ScienceWorldEnv("", envStepLimit=1 << 30)
        self.loaded: int | None = None

    def reset(self, task: int) -> list[str]:
        if self.loaded != self.variations[task]:  # slea's env also loads only on a change
            self.env.load(self.task, self.variations[task], "", True)
            self.loaded = self.variations[task]
        return list(self.env.reset()[1]["valid"])

    def step(self, action: str) -> tuple[list[str], bool]:
        _, _, done, info = self.env.step(action)
        return list(info["valid"]), done

    def close(self) -> None:
        self.env.close()


class _SokobanCore:
    def __init__(self, n_tasks: int) -> None:
        from slea.envs.sokoban import DIRECTIONS, SokobanEnv, move

        gen = SokobanEnv(num_levels=n_tasks)
        self.levels = [gen.level_for(i) for i in range(n_tasks)]
        self.move, self.directions = move, list(DIRECTIONS)

    def _admissible(self) -> list[str]:
        ok = ("moved", "pushed")
        return [
            d for d in self.directions if self.move(self.level, self.boxes, self.player, d)[2] in ok
        ]

    def reset(self, task: int) -> list[str]:
        self.level = self.levels[task]
        self.boxes, self.player = self.level.boxes, self.level.player
        self.level.render(self.boxes, self.player)
        return self._admissible()

    def step(self, action: str) -> tuple[list[str], bool]:
        self.boxes, self.player, _ = self.move(self.level, self.boxes, self.player, action)
        self.level.render(self.boxes, self.player)
        return self._admissible(), self.boxes == self.level.targets

    def close(self) -> None:
        pass


# -- paired lock-step measurement -----------------------------------------------------------------
def _paired_pass(
    raw: Any, ours: Any, n_tasks: int, steps: int, horizon: int, strict: bool = True
) -> dict[str, float]:
    """One paired pass; ``strict`` fails when the sides diverge (else both follow raw's action
    and the number of diverged steps is reported)."""
    pick = _random_policy(0)
    sides = (raw, ours)
    t_reset = [0.0, 0.0]
    t_step = [0.0, 0.0]
    flip = 0

    def both(call: Callable[[Any], Any], acc: list[float]) -> list[Any]:
        nonlocal flip
        out: list[Any] = [None, None]
        for k in (0, 1) if flip else (1, 0):
            t = time.perf_counter()
            out[k] = call(sides[k])
            acc[k] += time.perf_counter() - t
        flip ^= 1
        return out

    task = 0
    adm = both(lambda s: s.reset(task), t_reset)
    done_steps = ep = diverged = 0
    while done_steps < steps:
        if adm[0] != adm[1]:
            if strict:
                raise RuntimeError(f"the sides diverged: {adm[0][:5]}... != {adm[1][:5]}...")
            diverged += 1
        action = pick(adm[0])
        (adm_r, end_r), (adm_o, end_o) = both(lambda s, a=action: s.step(a), t_step)
        if end_r != end_o and strict:
            raise RuntimeError(f"episode end differs after {action!r}: raw {end_r}, slea {end_o}")
        adm = [adm_r, adm_o]
        done_steps += 1
        ep += 1
        if end_r or end_o or ep >= horizon:
            task = (task + 1) % n_tasks
            adm = both(lambda s, t=task: s.reset(t), t_reset)
            ep = 0
    total_raw, total_ours = t_reset[0] + t_step[0], t_reset[1] + t_step[1]
    return {
        "raw_steps_per_s": steps / total_raw,
        "slea_steps_per_s": steps / total_ours,
        "overhead": total_ours / total_raw - 1,
        "step_overhead": t_step[1] / t_step[0] - 1,
        "step_ms_raw": 1e3 * t_step[0] / steps,
        "step_ms_slea": 1e3 * t_step[1] / steps,
        "reset_s_raw": t_reset[0],
        "reset_s_slea": t_reset[1],
        "diverged_steps": diverged,
    }


def _paired(
    name: str,
    raw: Any,
    ours: Any,
    n_tasks: int,
    steps: int,
    horizon: int,
    passes: int,
    note: str,
    strict: bool = True,
) -> dict[str, Any]:
    results = []
    for p in range(passes + 1):
        ours.inner_t = ours.step_t = 0.0
        r = _paired_pass(raw, ours, n_tasks, steps, horizon, strict)
        r["wrapper_share"] = ours.share()
        if p > 0:  # pass 0 warms caches and JITs
            results.append(r)
    raw.close()
    ours.close()

    def med(key: str) -> float:
        return statistics.median(r[key] for r in results)

    row = {
        "env": name,
        "raw steps/s": med("raw_steps_per_s"),
        "slea steps/s": med("slea_steps_per_s"),
        "overhead": f"{med('overhead'):+.1%}",
        "step overhead": f"{med('step_overhead'):+.1%}",
        "ms/step raw": med("step_ms_raw"),
        "ms/step slea": med("step_ms_slea"),
        "wrapper share": f"{med('wrapper_share'):.1%}"
        if results[0]["wrapper_share"] is not None
        else "n/a",
        "range": f"{min(r['overhead'] for r in results):+.1%} .. "
        f"{max(r['overhead'] for r in results):+.1%}",
        "note": note,
        "passes": results,
    }
    print(
        f"  {name}: raw {row['raw steps/s']:.1f}/s, slea {row['slea steps/s']:.1f}/s, "
        f"overhead {row['overhead']} (steps only {row['step overhead']})"
    )
    return row


# -- vector ---------------------------------------------------------------------------------------
def _vector_rate(env_id: str, n: int, mode: str, steps: int, horizon: int, **kwargs: Any) -> dict:
    import numpy as np

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
def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benches envs", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke run)")
    parser.add_argument("--only", default="textworld,alfworld,scienceworld,sokoban")
    parser.add_argument("--vector", type=int, default=8, help="envs in the vector (default 8)")
    parser.add_argument("--repeat", type=int, default=3, help="measured passes per env")
    parser.add_argument("--horizon", type=int, default=15, help="episode cut (steps)")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    only = set(args.only.split(","))
    scale = 0.25 if args.quick else 1.0
    passes = 1 if args.quick else args.repeat
    single: list[dict[str, Any]] = []
    vector: list[dict[str, Any]] = []
    import gymnasium

    import slea.envs

    slea.envs.register_envs()
    print(f"machine: {machine()}")

    if "textworld" in only:
        from slea.envs.textworld import make_games

        games = make_games(None, 8, seed=0, kind="coin", level=3, split="train")
        for desc in (False, True):
            single.append(
                _paired(
                    "TextWorld cc3" + (" +description" if desc else ""),
                    _TextWorldRaw(games, desc),
                    _Slea(
                        gymnasium.make("slea/TextWorld-v0", games=games, include_description=desc),
                        inner="_tw",
                    ),
                    len(games),
                    int(1000 * scale),
                    args.horizon,
                    passes,
                    "raw asks textworld for the room description at every step; slea caches "
                    "it per ground-truth state"
                    if desc
                    else "same information on both sides (feedback, admissible, score, facts)",
                )
            )
        for mode in ("async", "sync"):
            r = _vector_rate(
                "slea/TextWorld-v0", args.vector, mode, int(3000 * scale), args.horizon, games=games
            )
            vector.append({"env": "TextWorld cc3", "mode": mode, "n": args.vector, **r})
            print(f"  TextWorld vector {mode}: {r['steps_per_s']:.1f} steps/s")

    if "alfworld" in only:
        from slea.envs.alfworld import find_games

        games = find_games(ALFWORLD_DATA, "train")
        single.append(
            _paired(
                "ALFWorld (slea's test games)",
                _ALFWorldRaw(games),
                _Slea(gymnasium.make("slea/ALFWorld-v0", games=games), inner="_env"),
                len(games),
                int(200 * scale),
                args.horizon,
                passes,
                "tests/data games (no ALFWorld data here); raw = PddlEnv + ALFWorld's "
                "AlfredDemangler; slea caches the PDDL translation across resets",
            )
        )
        r = _vector_rate(
            "slea/ALFWorld-v0", args.vector, "async", int(600 * scale), args.horizon, games=games
        )
        vector.append({"env": "ALFWorld (test games)", "mode": "async", "n": args.vector, **r})
        print(f"  ALFWorld vector async: {r['steps_per_s']:.1f} steps/s")

    if "scienceworld" in only:
        task, variations = "find-non-living-thing", [0, 1, 2]
        single.append(
            _paired(
                f"ScienceWorld {task}",
                _ScienceWorldRaw(task, variations),
                _Slea(
                    gymnasium.make("slea/ScienceWorld-v0", task_name=task, variations=variations),
                    inner="_sw",
                ),
                len(variations),
                int(60 * scale),
                args.horizon,
                passes,
                "one JVM per side, JVM start excluded; variations 0-2; the two simulators "
                "do not always list the same valid actions, so the sides may drift apart",
                strict=False,
            )
        )
        r = _vector_rate(
            "slea/ScienceWorld-v0",
            args.vector,
            "async",
            int(120 * scale),
            args.horizon,
            task_name=task,
            variations=variations,
        )
        vector.append({"env": f"ScienceWorld {task}", "mode": "async", "n": args.vector, **r})
        print(f"  ScienceWorld vector async: {r['steps_per_s']:.1f} steps/s")

    if "sokoban" in only:
        single.append(
            _paired(
                "Sokoban 7x7, 2 boxes",
                _SokobanCore(50),
                _Slea(gymnasium.make("slea/Sokoban-v0", num_levels=50)),
                50,
                int(20000 * scale),
                args.horizon,
                passes,
                "raw = slea's own move + render (no package): the overhead is the whole env layer",
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
        "step overhead",
        "ms/step raw",
        "ms/step slea",
        "wrapper share",
        "range",
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
            "passes": passes,
        },
    )
    print(f"\nwrote {path}")
    return 0
