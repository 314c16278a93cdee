"""``wavbrivl push DIR --repo OWNER/NAME``: upload a bundle folder to a Hugging Face model repo.

``WavBriVLPipeline.from_pretrained("OWNER/NAME")`` then loads it anywhere (downloaded once into the Hugging Face
cache). The token and the connection are checked before anything is sent, as ``wavbrivl space export --push``
does, so offline the command stops with one line and uploads nothing.
"""
from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("push", help="upload a bundle folder to a Hugging Face model repo")
    p.add_argument("dir", help="bundle folder (config.json, weights, and its card, index/, examples/ ...)")
    p.add_argument("--repo", required=True, metavar="OWNER/NAME", help="model repo to create or update")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..hub import push_bundle
    from ..space import SpaceError

    try:
        print(f"pushed: {push_bundle(args.dir, args.repo, private=args.private)}")
    except SpaceError as exc:
        print(f"wavbrivl push: error: {exc}", file=sys.stderr)
        return 2
    return 0
