"""``wavbrivl world NAME ACTION``: the worlds this project builds itself (see :mod:`wavbrivl.worlds`)."""
from __future__ import annotations

import argparse
import importlib
import pkgutil


def register(subparsers: argparse._SubParsersAction) -> None:
    try:
        from .. import worlds
    except ImportError:  # a copy without the world builders (a Space export): no `world` command
        return
    p = subparsers.add_parser("world", help="build, regenerate or evaluate one of the project's own bundles")
    sub = p.add_subparsers(dest="world", metavar="WORLD", required=True)
    for info in sorted(pkgutil.iter_modules(worlds.__path__), key=lambda i: i.name):
        if info.ispkg:
            importlib.import_module(f"{worlds.__name__}.{info.name}.cli").register(sub)
