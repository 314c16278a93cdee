"""``wavbrivl starter build --out assets/starter``: rebuild the offline starter bundle from scratch."""
from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("starter", help="the offline starter world bundle")
    sub = p.add_subparsers(dest="starter_command", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="generate the world, train backbone, audio encoder and generator, evaluate")
    b.add_argument("--out", default="assets/starter")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--reduced", action="store_true", help="a CI-sized build (fewer items and steps)")
    b.set_defaults(func=run)
    w = sub.add_parser("world", help="regenerate a bundle's world (audio, images, manifest) to evaluate it")
    w.add_argument("--bundle", default="assets/starter", help="the bundle whose seed and size to reproduce")
    w.add_argument("--out", required=True)
    w.set_defaults(func=run_world)


def run(args: argparse.Namespace) -> int:
    from ..starter import StarterSettings, build_starter

    settings = StarterSettings.reduced() if args.reduced else StarterSettings()
    settings.seed = args.seed
    report = build_starter(args.out, settings)
    print(json.dumps({k: report[k] for k in ("seen", "unseen", "generation") if k in report}, indent=2))
    print(f"built {args.out} in {report['build']['timings']['total_s']:.0f} s")
    return 0


def run_world(args: argparse.Namespace) -> int:
    from ..starter import write_bundle_world

    manifest = write_bundle_world(args.bundle, args.out)
    print(f"wrote {manifest}; evaluate with: wavbrivl eval --checkpoint {args.bundle} --task world --data {manifest} --out REPORT_DIR")
    return 0
