"""``wavbrivl space export OUT [--bundle NAME] [--real PRESET] [--push REPO_ID]``: the demo as a Hugging Face Space."""
from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..space import DEFAULT_BUNDLE_NAME

    p = subparsers.add_parser("space", help="export the demo as a Hugging Face Space tree, and push it")
    sub = p.add_subparsers(dest="space_command", metavar="ACTION", required=True)
    e = sub.add_parser("export", help="write a clean Space tree (app, demo, library, bundle, README, .gitattributes)")
    e.add_argument("out", help="output folder (must not exist, or be an earlier export with --force)")
    e.add_argument("--bundle", action="append", metavar="NAME",
                   help=f"bundle folder under assets/ to ship (repeatable; default: {DEFAULT_BUNDLE_NAME})")
    e.add_argument("--push", metavar="REPO_ID", help="then upload the tree to this Space (OWNER/NAME) with huggingface_hub")
    e.add_argument("--private", action="store_true", help="create the Space private (with --push)")
    e.add_argument("--force", action="store_true", help="replace OUT when it holds an earlier export")
    e.add_argument("--no-pairs", action="store_true",
                   help="leave each bundle's training pairs (pairs/) out: the Space runs without them")
    e.add_argument("--real", metavar="PRESET",
                   help="prepare the Space for real mode (WAVBRIVL_REAL=PRESET, e.g. vit-h-14): ZeroGPU hardware suggested, the "
                        "hub repos it downloads listed and preloaded, the variable documented in the README")
    e.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from ..space import DEFAULT_BUNDLE_NAME, SpaceError, check_repo_id, export_space, hub_client, push_space

    try:
        client = None
        if args.push:  # token and connection first: a push that cannot work stops before anything is written
            check_repo_id(args.push)
            client = hub_client()
        if args.real:
            from ..presets import PRESETS

            if args.real not in PRESETS:
                raise SpaceError(f"--real takes a preset ({', '.join(PRESETS)}), not {args.real!r}")
            if args.no_pairs:
                print(f"note: without pairs/ the Space cannot retarget into {args.real}; set WAVBRIVL_CHECKPOINT to a bundle "
                      "already in that space", file=sys.stderr)
        out = export_space(args.out, args.bundle or [DEFAULT_BUNDLE_NAME], force=args.force, pairs=not args.no_pairs,
                           real=args.real)
        files = [p for p in out.rglob("*") if p.is_file()]
        print(f"wrote {out}: {len(files)} files, {sum(p.stat().st_size for p in files) / 1e6:.1f} MB")
        if args.push:
            print(f"pushed: {push_space(out, args.push, client=client, private=args.private)}")
    except SpaceError as exc:
        print(f"wavbrivl space export: error: {exc}", file=sys.stderr)
        return 2
    return 0
