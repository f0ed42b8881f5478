"""Build the small ALFWorld-format test games under tests/data/alfworld/json_2.1.1/.

Each game is a ``game.tw-pddl`` JSON file (PDDL domain + text grammar + PDDL problem, a
``solvable`` flag and a ``walkthrough``) next to a ``traj_data.json`` with its task type: the
layout and file format of the ALFWorld data. The domain and grammar in ``logic/`` are slea's own
(a small kitchen), written with ALFWorld's predicate names and sentence conventions.

Run from the repository root (needs textworld with fast_downward, i.e. the [envs] extra):

    PYTHONPATH=python python tests/data/alfworld/build_games.py

The walkthrough is the planner's plan; the script checks that playing it wins.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "json_2.1.1"

# receptacle type -> (ALFRED-style id, openable)
RECEPTACLES = {
    "CounterTop": (
        "CounterTop_bar__minus_01_dot_87_bar__plus_00_dot_95_bar__minus_01_dot_21",
        False,
    ),
    "Fridge": ("Fridge_bar__minus_02_dot_10_bar__plus_00_dot_00_bar__plus_01_dot_07", True),
    "Cabinet": ("Cabinet_bar__plus_00_dot_38_bar__plus_00_dot_37_bar__minus_01_dot_24", True),
    "SinkBasin": (
        "Sink_bar__plus_01_dot_38_bar__plus_00_dot_81_bar__minus_01_dot_27_bar_SinkBasin",
        False,
    ),
    "Microwave": ("Microwave_bar__minus_00_dot_37_bar__plus_01_dot_11_bar__plus_00_dot_43", True),
    "Desk": ("Desk_bar__plus_02_dot_29_bar__plus_00_dot_01_bar__minus_01_dot_15", False),
    "Shelf": ("Shelf_bar__plus_01_dot_75_bar__plus_00_dot_55_bar__minus_02_dot_56", False),
}


@dataclass
class Obj:
    kind: str  # e.g. "Apple"
    coords: str  # the id's coordinate part, makes the id unique
    receptacle: str  # key of RECEPTACLES
    props: tuple[str, ...] = ("pickupable",)

    @property
    def id(self) -> str:
        return f"{self.kind}_bar_{self.coords}"


@dataclass
class Game:
    split: str
    task_type: str
    folder: str
    goal_text: str
    goal: str
    receptacles: list[str]
    objects: list[Obj]
    solvable: bool = True
    params: dict[str, object] = field(default_factory=dict)


def problem_text(name: str, game: Game) -> str:
    locs = {
        r: f"loc_bar_{i + 1}_bar_{2 * i}_bar_{i % 4}_bar_{15 * i}"
        for i, r in enumerate(game.receptacles)
    }
    start = "loc_bar_0_bar_0_bar_0_bar_0"
    otypes = sorted({o.kind for o in game.objects})
    objects = ["agent1 - agent", f"{start} - location"]
    objects += [f"{loc} - location" for loc in locs.values()]
    objects += [f"{RECEPTACLES[r][0]} - receptacle" for r in game.receptacles]
    objects += [f"{o.id} - object" for o in game.objects]
    objects += [f"{t}Type - otype" for t in otypes]
    objects += [f"{r}Type - rtype" for r in game.receptacles]
    init = [f"(atLocation agent1 {start})"]
    for r in game.receptacles:
        rid, openable = RECEPTACLES[r]
        init += [f"(receptacleAtLocation {rid} {locs[r]})", f"(receptacleType {rid} {r}Type)"]
        if openable:
            init.append(f"(openable {rid})")
    for o in game.objects:
        rid = RECEPTACLES[o.receptacle][0]
        init += [
            f"(inReceptacle {o.id} {rid})",
            f"(objectAtLocation {o.id} {locs[o.receptacle]})",
            f"(objectType {o.id} {o.kind}Type)",
        ]
        init += [f"({p} {o.id})" for p in o.props]
    body = "\n    ".join(objects)
    facts = "\n    ".join(init)
    return (
        f"(define (problem {name})\n  (:domain alfred)\n  (:objects\n    {body}\n  )\n"
        f"  (:init\n    {facts}\n  )\n  (:goal\n    {game.goal})\n)\n"
    )


def _in(kind: str, recep: str, extra: str = "") -> str:
    return (
        "(exists (?o - object ?r - receptacle) (and "
        f"(objectType ?o {kind}Type) (receptacleType ?r {recep}Type) (inReceptacle ?o ?r){extra}))"
    )


APPLE = Obj(
    "Apple",
    "_minus_01_dot_75_bar__plus_00_dot_97_bar__minus_01_dot_30",
    "CounterTop",
    ("pickupable", "heatable", "coolable", "cleanable"),
)
APPLE2 = Obj(
    "Apple",
    "_plus_00_dot_21_bar__plus_00_dot_40_bar__minus_01_dot_12",
    "Cabinet",
    ("pickupable", "heatable", "coolable", "cleanable"),
)
MUG = Obj(
    "Mug",
    "_plus_00_dot_30_bar__plus_00_dot_40_bar__minus_01_dot_20",
    "Cabinet",
    ("pickupable", "heatable", "coolable", "cleanable"),
)
BOOK = Obj("Book", "_plus_02_dot_10_bar__plus_00_dot_56_bar__minus_02_dot_50", "Shelf")
LAMP = Obj(
    "DeskLamp", "_plus_02_dot_50_bar__plus_00_dot_80_bar__minus_01_dot_20", "Desk", ("toggleable",)
)
KITCHEN = ["CounterTop", "Fridge", "Cabinet", "SinkBasin", "Microwave"]

GAMES = [
    Game(
        "train",
        "pick_and_place_simple",
        "pick_and_place_simple-Apple-None-Fridge-10",
        "put some apple in fridge",
        _in("Apple", "Fridge"),
        KITCHEN,
        [APPLE, MUG],
    ),
    Game(
        "train",
        "pick_heat_then_place_in_recep",
        "pick_heat_then_place_in_recep-Mug-None-CounterTop-10",
        "heat some mug and put it in countertop",
        _in("Mug", "CounterTop", " (isHot ?o)"),
        KITCHEN,
        [APPLE, MUG],
    ),
    Game(
        "train",
        "pick_cool_then_place_in_recep",
        "pick_cool_then_place_in_recep-Apple-None-CounterTop-10",
        "cool some apple and put it in countertop",
        _in("Apple", "CounterTop", " (isCool ?o)"),
        KITCHEN,
        [APPLE, MUG],
    ),
    Game(
        "train",
        "pick_two_obj_and_place",
        "pick_two_obj_and_place-Apple-None-Fridge-10",
        "put two apple in fridge",
        "(exists (?o1 - object ?o2 - object ?r - receptacle) (and (not (= ?o1 ?o2)) "
        "(objectType ?o1 AppleType) (objectType ?o2 AppleType) (receptacleType ?r FridgeType) "
        "(inReceptacle ?o1 ?r) (inReceptacle ?o2 ?r)))",
        KITCHEN,
        [APPLE, APPLE2, MUG],
    ),
    # Skipped by the loader: unsolvable, and a movable-receptacle task.
    Game(
        "train",
        "pick_and_place_simple",
        "pick_and_place_simple-Mug-None-Fridge-11",
        "put some mug in fridge",
        _in("Mug", "Fridge"),
        KITCHEN,
        [APPLE, MUG],
        solvable=False,
    ),
    Game(
        "train",
        "pick_and_place_with_movable_recep",
        "pick_and_place_with_movable_recep-Apple-Mug-Fridge-10",
        "put some apple in fridge",
        _in("Apple", "Fridge"),
        KITCHEN,
        [APPLE, MUG],
    ),
    Game(
        "valid_seen",
        "pick_clean_then_place_in_recep",
        "pick_clean_then_place_in_recep-Mug-None-CounterTop-10",
        "clean some mug and put it in countertop",
        _in("Mug", "CounterTop", " (isClean ?o)"),
        KITCHEN,
        [APPLE, MUG],
    ),
    Game(
        "valid_unseen",
        "look_at_obj_in_light",
        "look_at_obj_in_light-Book-None-DeskLamp-10",
        "look at book under the desklamp",
        "(exists (?a - agent ?o - object ?t - object ?r - receptacle ?l - location) (and "
        "(objectType ?o BookType) (holds ?a ?o) (objectType ?t DeskLampType) (isToggled ?t) "
        "(inReceptacle ?t ?r) (receptacleAtLocation ?r ?l) (atLocation ?a ?l)))",
        ["Desk", "Shelf", "Cabinet"],
        [BOOK, LAMP],
    ),
]


def build() -> None:
    import textworld
    from textworld.envs import PddlEnv

    from slea.envs.alfworld import demangle_names

    domain = (HERE / "logic" / "kitchen.pddl").read_text()
    grammar = (HERE / "logic" / "kitchen.twl2").read_text()
    if OUT.exists():
        shutil.rmtree(OUT)
    for i, g in enumerate(GAMES):
        trial = HERE / OUT / g.split / g.folder / f"trial_T2026010{i}_00000{i}"
        trial.mkdir(parents=True)
        data = {
            "pddl_domain": domain,
            "grammar": grammar.replace("UNKNOWN GOAL", g.goal_text),
            "pddl_problem": problem_text(g.folder.split("-")[0] + f"_{i}", g),
            "solvable": None,
            "walkthrough": None,
        }
        env = PddlEnv(textworld.EnvInfos(policy_commands=True, admissible_commands=True, won=True))
        env.load(data)
        names = demangle_names(env._entity_infos)
        for id_, info in env._entity_infos.items():
            info.name = names[id_]
        state = env.reset()
        plan = list(state["policy_commands"])
        for command in plan:
            state, _, _ = env.step(command)
        assert state["won"], f"{g.folder}: the plan {plan} does not win"
        data["solvable"] = g.solvable
        data["walkthrough"] = plan
        (trial / "game.tw-pddl").write_text(json.dumps(data))
        traj = {
            "task_type": g.task_type,
            "task_id": trial.name,
            "pddl_params": {
                "object_target": g.folder.split("-")[1],
                "parent_target": g.folder.split("-")[3],
            },
            "turk_annotations": {"anns": [{"task_desc": g.goal_text}]},
        }
        (trial / "traj_data.json").write_text(json.dumps(traj, indent=1))
        print(f"{trial.relative_to(HERE)}: {len(plan)} steps: {' > '.join(plan)}")


if __name__ == "__main__":
    build()
