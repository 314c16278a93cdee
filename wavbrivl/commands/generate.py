"""``wavbrivl generate``: an image from a sound (optionally mixed with a text prompt's embedding)."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("generate", help="generate an image from a sound")
    p.add_argument("--checkpoint", required=True, help="bundle folder or hub id")
    p.add_argument("--audio", required=True)
    p.add_argument("--generator", help="pipeline folder, hub id, or a source name from wavbrivl/generators.json such as "
                   "ip-adapter-sd15-lcm or unclip-h (default: the bundle's generator/ folder, else its card's hub.generators)")
    p.add_argument("--prompt", default=None,
                   help="text prompt: mixed into the condition by --mix, and given to generators that read text")
    p.add_argument("--mix", type=float, default=0.0,
                   help="the prompt's weight in the condition, 0 (sound only) to 1 (prompt only)")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=None, help="default: the bundle's")
    p.add_argument("--steps", type=int, default=None, help="default: the bundle's, else the generator's")
    p.add_argument("--guidance", type=float, default=None, help="default: the bundle's, else the generator's")
    p.add_argument("--noise-level", type=int, default=None, help="Stable unCLIP's noise augmentation (default: the bundle's)")
    p.add_argument("--device", default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..pipeline import AUTO, WavBriVLPipeline

    if not 0.0 <= args.mix <= 1.0:
        raise ValueError(f"--mix must be between 0 and 1, not {args.mix}")
    if args.mix > 0 and not args.prompt:
        raise ValueError("--mix above 0 needs --prompt")
    source = args.generator or AUTO  # the bundle's generator/ folder, else the first generator its card names
    pipeline = WavBriVLPipeline.from_pretrained(args.checkpoint, device=args.device, index=None, generator=source,
                                                generator_on_cpu=True)
    image = pipeline.generate(args.audio, prompt=args.prompt, mix=args.mix, seed=args.seed, steps=args.steps,
                              guidance=args.guidance, noise_level=args.noise_level)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out)
    print(f"wrote {args.out} ({image.width}x{image.height}) with {pipeline.generator.kind} from {pipeline.generator.source}")
    return 0
