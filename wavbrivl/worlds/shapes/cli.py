"""``wavbrivl world shapes build|regenerate|eval``: build, regenerate and evaluate the shapes bundle."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("shapes", help="the offline shapes world (assets/shapes)")
    sub = p.add_subparsers(dest="world_command", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="generate the world, train backbone, audio encoder and generator, evaluate")
    b.add_argument("--out", default="assets/shapes")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--reduced", action="store_true", help="a CI-sized build (fewer items and steps)")
    b.set_defaults(func=run_build)
    w = sub.add_parser("regenerate", help="regenerate a bundle's world (audio, images, manifest) to evaluate it")
    w.add_argument("--bundle", default="assets/shapes", help="the bundle whose seed and size to reproduce")
    w.add_argument("--out", required=True)
    w.set_defaults(func=run_regenerate)
    e = sub.add_parser("eval", help="seen/never-heard retrieval, zero-shot and generation consistency of a bundle")
    e.add_argument("--bundle", default="assets/shapes")
    e.add_argument("--data", required=True, help="the manifest written by `wavbrivl world shapes regenerate`")
    e.add_argument("--out", required=True, help="report folder")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--device", default="cpu")
    e.set_defaults(func=run_eval)


def run_build(args: argparse.Namespace) -> int:
    from .build import ShapesSettings, build_shapes

    settings = ShapesSettings.reduced() if args.reduced else ShapesSettings()
    settings.seed = args.seed
    report = build_shapes(args.out, settings)
    print(json.dumps({k: report[k] for k in ("seen", "unseen", "generation") if k in report}, indent=2))
    print(f"built {args.out} in {report['build']['timings']['total_s']:.0f} s")
    return 0


def run_regenerate(args: argparse.Namespace) -> int:
    from .build import write_bundle_world

    manifest = write_bundle_world(args.bundle, args.out)
    print(f"wrote {manifest}; evaluate with: "
          f"wavbrivl world shapes eval --bundle {args.bundle} --data {manifest} --out REPORT_DIR")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from ...pipeline import WavBriVLPipeline
    from .evaluate import evaluate_world_manifest

    pipeline = WavBriVLPipeline.from_pretrained(args.bundle, device=args.device)
    evaluate_world_manifest(pipeline, args.data, args.out, seed=args.seed)
    print((Path(args.out) / "report.md").read_text())
    print(f"wrote {Path(args.out) / 'report.json'}")
    return 0
