"""``wavbrivl prepare-videos VIDEO_DIR OUT_DIR``: audio track + evenly spaced frames per video, and a manifest."""
from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("prepare-videos", help="turn a folder of videos into a paired audio/frames manifest")
    p.add_argument("video_dir")
    p.add_argument("out_dir")
    p.add_argument("--frames", type=int, default=3, help="frames per video, evenly spaced")
    p.add_argument("--image-size", type=int, default=None, help="resize frames to this square size")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data import prepare_videos

    manifest, skipped = prepare_videos(args.video_dir, args.out_dir, frames=args.frames, image_size=args.image_size)
    for s in skipped:
        print(f"skipped: {s.reason}", file=sys.stderr)
    rows = sum(1 for _ in open(manifest)) - 1
    print(f"wrote {manifest}: {rows} clip(s); {len(skipped)} video(s) skipped")
    return 0 if rows else 1
