"""The ``wavbrivl`` command line.

Sub-commands live one per file in :mod:`wavbrivl.commands`; each exposes
``register(subparsers)`` and sets ``func`` on its parser. Discovering them here
keeps this file free of every command's details, so commands can be added
without touching a shared list.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from typing import Sequence

from . import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wavbrivl",
        description="Align audio to a frozen open_clip embedding space; search, classify and generate from sound.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Our own progress messages at INFO; third-party libraries (open_clip logs every model build) at WARNING.
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("wavbrivl").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        # Expected user-facing failures (bad input, missing weights) get one readable line, not a traceback.
        print(f"wavbrivl {args.command}: error: {exc}", file=sys.stderr)
        return 1
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
