"""Command line: ``slea train | sft | eval | report | library | envs | models | serve``.

The command line sits above every other part of the package: each subcommand is a module with
two functions, ``add_arguments(parser)`` and ``run(args) -> int``, that may use training, reports,
the library and the envs alike. Those modules import nothing heavy at module level (torch,
transformers, textworld are imported inside ``run``), so ``slea --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("slea.cli.train", "train a policy from a YAML config"),
    "sft": ("slea.cli.sft", "supervised warm start on the envs' walkthroughs"),
    "eval": ("slea.cli.eval", "evaluate a run's checkpoint (the latest by default)"),
    "report": ("slea.cli.report", "write the HTML report of a run"),
    "library": ("slea.experience.cli", "show, export, import or summarise an experience library"),
    "envs": ("slea.envs.cli", "list environments or generate TextWorld games"),
    "models": ("slea.models.cli", "list, fetch or convert pretrained models (GGUF -> HF)"),
    "serve": ("slea.cli.serve", "serve a local model over vLLM's OpenAI-compatible API"),
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``slea eval: error: ... (see slea eval --help)``, exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="slea", description=__doc__.splitlines()[0])
    from slea._core import __version__

    parser.add_argument("--version", action="version", version=f"slea {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            p.set_defaults(_run=_unavailable(name))
            continue
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _unavailable(name: str):  # type: ignore[no-untyped-def]
    def run(args: argparse.Namespace) -> int:
        print(f"slea {name}: not available in this build", file=sys.stderr)
        return 2

    return run


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    from slea.errors import SleaError

    try:
        return int(args._run(args) or 0)
    except SleaError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file the command needs is missing, unreadable or not writable
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
