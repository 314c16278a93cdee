"""``wavbrivl index build|add``: embed image folders / manifests and caption lists into a gallery index."""
from __future__ import annotations

import argparse
import sys

from .embed import add_model_arguments, load_model


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("index", help="build or extend a gallery index of images and captions")
    sub = p.add_subparsers(dest="index_command", metavar="ACTION", required=True)
    for name, text in (("build", "create an index (or resume an interrupted build)"), ("add", "append new items to an index")):
        q = sub.add_parser(name, help=text)
        q.add_argument("--images", help="image folder (recursive) or manifest CSV/JSONL")
        q.add_argument("--captions", help="text file, one caption per line")
        add_model_arguments(q)
        q.add_argument("--out", required=True, help="index folder")
        q.add_argument("--dtype", choices=["float16", "float32"], default="float16", help="stored embedding precision")
        q.add_argument("--batch-size", type=int, default=64)
        q.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..index import GalleryIndex

    if not args.images and not args.captions:
        raise ValueError("give --images and/or --captions")
    model = load_model(args)
    index, report = GalleryIndex.build(model, args.out, images=args.images, captions=args.captions,
                                       dtype=args.dtype, batch_size=args.batch_size)
    for _item, reason in report.skipped:
        print(f"skipped: {reason}", file=sys.stderr)
    print(f"{args.out}: {index.count('image')} images, {index.count('text')} captions "
          f"({report.added} added, {report.already_indexed} already indexed, {len(report.skipped)} skipped); "
          f"space {index.backbone_id}")
    return 0
