"""The ``jointseg`` command line: segment, train once and apply, refine, report, or run the demo."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from jointseg._core.memory import limit_malloc_arenas
from jointseg.cli import _demo, _report, _segment, _train

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``jointseg`` command."""
    from jointseg import __version__

    parser = argparse.ArgumentParser(prog="jointseg", description=__doc__)
    parser.add_argument("--version", action="version", version=f"jointseg {__version__}")
    verbosity = argparse.ArgumentParser(add_help=False)
    group = verbosity.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="store_true", help="log each step")
    group.add_argument("-q", "--quiet", action="store_true", help="no progress bars, only warnings and errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (_segment, _train, _report, _demo):
        module.add_parsers(sub, parents=[verbosity])  # every command takes -v / -q
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``jointseg`` console script."""
    limit_malloc_arenas()  # before any worker thread allocates: whole slides stay within the memory bar
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        args.func(args)
    except (KeyError, ValueError, TypeError, FileExistsError, FileNotFoundError, RuntimeError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        print(f"jointseg: error: {message}", file=sys.stderr)
        return 2
    return 0
