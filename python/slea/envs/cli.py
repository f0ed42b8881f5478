"""``slea envs list`` and ``slea envs make-textworld``.

::

    slea envs list
    slea envs make-textworld --out games --n 64 --n-test 16 --seed 0 --kind coin --level 3
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``list`` and ``make-textworld`` subcommands to ``parser``."""
    sub = parser.add_subparsers(dest="envs_command", metavar="ACTION")
    sub.add_parser("list", help="list the registered environment ids", description="list envs")
    make = sub.add_parser(
        "make-textworld",
        help="generate (or reuse cached) TextWorld games: a train and a test split",
        description="Generate TextWorld games into DIR/<kind>-L<level>-s<seed>/ "
        "(cached: existing games are reused). Prints one game path per line.",
    )
    make.add_argument("--out", required=True, metavar="DIR", help="output (cache) directory")
    make.add_argument("--n", type=int, required=True, metavar="N", help="number of train games")
    make.add_argument(
        "--n-test", type=int, default=16, metavar="N", help="number of test games (default 16)"
    )
    make.add_argument("--n-valid", type=int, default=0, metavar="N", help="validation games")
    make.add_argument("--seed", type=int, default=0, help="base seed of the game set")
    make.add_argument(
        "--kind", choices=["coin", "treasure", "cooking"], default="coin", help="game family"
    )
    make.add_argument(
        "--level",
        "--difficulty",
        dest="level",
        type=int,
        default=3,
        help="difficulty: coin 1-300, treasure 1-30, cooking 1-5 (recipe size); default 3",
    )
    make.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="cooking settings (go=6, cook=true, cut=true, open=true, drop=true, take=N)",
    )
    make.add_argument(
        "--workers", type=int, default=2, help="generator processes (at most 2; default 2)"
    )
    make.add_argument("--quiet", action="store_true", help="print only the game paths")


def _parse_settings(items: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
        low = value.lower()
        out[key] = True if low == "true" else False if low == "false" else int(value)
    return out


def run(args: argparse.Namespace) -> int:
    """Run ``slea envs ...``; returns the exit code."""
    if args.envs_command == "list":
        return _list()
    if args.envs_command == "make-textworld":
        return _make_textworld(args)
    print("usage: slea envs {list,make-textworld} ...", file=sys.stderr)
    return 2


def _list() -> int:
    from slea.envs import ENVS, missing_requirements

    width = max(len(k) for k in ENVS)
    for env_id, entry in ENVS.items():
        missing = missing_requirements(env_id)
        note = f"  [needs: pip install 'slea-rl[envs]' ({', '.join(missing)})]" if missing else ""
        print(f"{env_id:<{width}}  {entry.description}{note}")
    return 0


def _make_textworld(args: argparse.Namespace) -> int:
    try:
        settings = _parse_settings(args.settings) or None
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from slea.envs.textworld import make_splits

    sizes = {"train": args.n, "valid": args.n_valid, "test": args.n_test}
    sizes = {k: v for k, v in sizes.items() if v > 0}

    def progress(done: int, todo: int) -> None:
        if not args.quiet:
            print(f"  generated {done}/{todo}", file=sys.stderr)

    try:
        splits = make_splits(
            args.out,
            sizes,
            args.seed,
            kind=args.kind,
            level=args.level,
            settings=settings,
            workers=args.workers,
            on_progress=progress,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for paths in splits.values():
        for p in paths:
            print(p)
    if not args.quiet:
        counts = ", ".join(f"{k} {len(v)}" for k, v in splits.items())
        print(f"games ready ({counts}) under {args.out}", file=sys.stderr)
    return 0
