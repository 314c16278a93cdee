"""``wavbrivl train``: align an audio encoder to a frozen backbone on a paired manifest."""
from __future__ import annotations

import argparse
import sys
from dataclasses import fields


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..train import TrainConfig

    p = subparsers.add_parser(
        "train", help="train the audio encoder against the frozen image space (MoCo queue, cached embeddings)",
        description="Every option of TrainConfig is a flag; --config FILE (YAML/JSON) sets defaults that flags override.",
    )
    p.add_argument("--config", help="YAML or JSON file with training options")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        else:
            kind = {"int": int, "float": float, "int | None": int, "float | None": float}.get(str(f.type), str)
            p.add_argument(flag, dest=f.name, type=kind, default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..train import TrainConfig, train

    options = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    if args.config:
        cfg = TrainConfig.from_file(args.config, **options)
    else:
        given = {k: v for k, v in options.items() if v is not None}
        if "manifest" not in given or "out" not in given:
            raise ValueError("--manifest and --out are required (or give them in --config)")
        cfg = TrainConfig(**given)
    result = train(cfg)
    for s in result.skipped:
        print(f"skipped: {s.reason}", file=sys.stderr)
    print(f"trained {result.step} steps in {result.seconds:.0f} s; {len(result.skipped)} row(s) skipped")
    print(f"best checkpoint: {result.best_dir} {result.best_metrics}")
    print(f"last checkpoint: {result.last_dir}")
    return 0
