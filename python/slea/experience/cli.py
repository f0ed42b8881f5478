"""``slea library show | export | import | stats``: inspect and edit experience-library snapshots.

Examples::

    slea library show runs/x/library.snap --zone warning --limit 20
    slea library stats runs/x/library.snap            # sizes, hit rate, utility per entry
    slea library export runs/x/library.snap lib.jsonl
    slea library import lib.jsonl new.snap            # creates new.snap (hashing embedder)

Every file is written atomically (temporary file, fsync, rename), and never over the file the
command reads. Errors (a missing, unreadable or corrupt file, a bad JSONL line, an output that
is the input) print one line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``library`` subcommands to ``parser``."""
    sub = parser.add_subparsers(dest="library_command", metavar="ACTION", required=True)
    p = sub.add_parser("show", help="list the entries of a snapshot")
    p.add_argument("snapshot", type=Path)
    p.add_argument("--zone", choices=("strategy", "warning"))
    p.add_argument("--level", choices=("principle", "pattern", "example"))
    p.add_argument("--limit", type=int, default=50, help="entries shown (default 50, 0 = all)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")

    p = sub.add_parser("export", help="write a snapshot's entries as JSONL")
    p.add_argument("snapshot", type=Path)
    p.add_argument("output", type=Path)

    p = sub.add_parser("import", help="add JSONL entries to a snapshot (created if absent)")
    p.add_argument("input", type=Path)
    p.add_argument("snapshot", type=Path)
    p.add_argument(
        "--embedder",
        choices=("hashing", "minilm"),
        default="hashing",
        help="embedder of a new snapshot (default hashing)",
    )
    p.add_argument("--dim", type=int, default=256, help="hashing dimension of a new snapshot")

    p = sub.add_parser("stats", help="sizes, retrieval counters and utility per entry")
    p.add_argument("snapshot", type=Path)
    p.add_argument("--top", type=int, default=10, help="entries in the utility table")
    p.add_argument("--json", action="store_true", help="print the stats as JSON")


def run(args: argparse.Namespace) -> int:
    """Run the chosen action; returns the exit status (2, with one line on stderr, on an error
    in the files or arguments)."""
    from slea.errors import SleaError

    actions = {"show": _show, "export": _export, "import": _import, "stats": _stats}
    try:
        return actions[args.library_command](args)
    except (SleaError, ValueError, KeyError, OSError) as exc:
        text = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: slea library {args.library_command}: {' '.join(str(text).split())}",
              file=sys.stderr)  # fmt: skip
        return 2


def _same_file(a: Path, b: Path) -> bool:
    """True if ``a`` and ``b`` name one file (same resolved path, or hard links)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return False


def _refuse_overwrite(source: Path, target: Path, what: str) -> None:
    if _same_file(source, target):
        raise ValueError(
            f"{target} is also the {what} this command reads; writing it would destroy the "
            "input: choose another output path"
        )


class _ReadOnlyEmbedder:
    """Stands in for the snapshot's embedder where nothing is embedded (show, stats, export), so
    that inspecting a MiniLM library does not load torch."""

    def __init__(self, name: str, dim: int) -> None:
        self.name, self.dim = name, dim

    def embed(self, texts: Any) -> Any:
        raise RuntimeError(f"slea library: this command does not embed text ({self.name})")


def _load(path: Path, embed: bool = False) -> Any:
    from slea import _core
    from slea.errors import SnapshotError
    from slea.experience.library import ExperienceLibrary

    try:
        if embed:
            return ExperienceLibrary.load(path)
        inner = _core.Library.load(str(path))
        params = json.loads(inner.params_json())
        embedder = _ReadOnlyEmbedder(params["embedder"], params["dim"])
        return ExperienceLibrary._restore(inner, embedder)
    except SnapshotError as exc:
        raise SnapshotError(f"{path}: {exc}") from None


def _show(args: argparse.Namespace) -> int:
    lib = _load(args.snapshot)
    entries = lib.entries(args.zone, args.level)
    entries.sort(key=lambda e: (e.zone, e.level, -e.score, e.id))
    shown = entries if args.limit <= 0 else entries[: args.limit]
    for e in shown:
        if args.json:
            print(json.dumps(e.to_dict(), ensure_ascii=False))
            continue
        util = "-" if e.utility is None else f"{e.utility:.2f}"
        print(f"[{e.id}] {e.zone}/{e.level} score={e.score:g} used={e.retrieved} utility={util}")
        print(f"    {e.text}")
        if e.observation is not None:
            print(f"    demo: {e.observation[:80]!r} -> {e.action!r}")
    if not args.json:
        print(f"{len(shown)} of {len(entries)} entries shown ({len(lib)} in the library)")
    return 0


def _export(args: argparse.Namespace) -> int:
    _refuse_overwrite(args.snapshot, args.output, "snapshot")
    n = _load(args.snapshot).export_jsonl(args.output)
    print(f"exported {n} entries to {args.output}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from slea.experience.embed import HashingEmbedder, MiniLMEmbedder
    from slea.experience.library import ExperienceLibrary

    _refuse_overwrite(args.input, args.snapshot, "JSONL input")
    if args.snapshot.exists():
        lib = _load(args.snapshot, embed=True)
    else:
        embedder = MiniLMEmbedder() if args.embedder == "minilm" else HashingEmbedder(args.dim)
        lib = ExperienceLibrary(embedder=embedder)
    ids = lib.import_jsonl(args.input)
    lib.save(args.snapshot)
    print(f"imported {len(ids)} entries into {args.snapshot} ({len(lib)} in total)")
    return 0


def _stats(args: argparse.Namespace) -> int:
    lib = _load(args.snapshot)
    st = lib.stats()
    used = sorted(
        (e for e in lib.entries() if e.successes + e.failures),
        key=lambda e: (-(e.successes + e.failures), e.id),
    )[: max(args.top, 0)]
    st["utility"] = [
        {
            "id": e.id,
            "zone": e.zone,
            "uses": e.successes + e.failures,
            "utility": e.utility,
            "retrieved": e.retrieved,
            "text": e.text,
        }
        for e in used
    ]
    if args.json:
        print(json.dumps(st, indent=2, ensure_ascii=False))
        return 0
    print(
        f"{st['entries']} entries, {st['clusters']} clusters, {st['links']} links, "
        f"version {st['version']}, embedder {st['embedder']}"
    )
    for zone, levels in st["sizes"].items():
        sizes = ", ".join(f"{lv} {n}/{st['capacity'][zone]}" for lv, n in levels.items())
        print(f"  {zone}: {sizes}")
    r = st["retrieval"]
    print(
        f"retrieval: {r['hits']} cluster hits ({r['cache_hits']} cached), {r['fallbacks']} "
        f"fallbacks ({r['fallback_empty']} empty), hit rate {r['hit_rate']:.2f}"
    )
    print(
        "admission: "
        + ", ".join(f"{k} {v}" for k, v in st["admission"].items())
        + f", evicted {st['evicted']}"
    )
    print(f"memory: {st['memory_bytes']} bytes, {st['bytes_per_entry']:.0f} per entry")
    if used:
        print("utility (most used first):")
        for u in st["utility"]:
            print(
                f"  [{u['id']}] {u['zone']:8s} uses={u['uses']:<4d} utility={u['utility']:.2f} "
                f"{u['text'][:70]}"
            )
    return 0
