"""``wavbrivl generate``: an image from a sound (optionally mixed with a text prompt's embedding)."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("generate", help="generate an image from a sound")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--audio", required=True)
    p.add_argument("--generator", help="pipeline folder or hub id (default: CHECKPOINT/generator if present, else Stable unCLIP 2.1)")
    p.add_argument("--prompt", default=None, help="text prompt (unCLIP) and text embedding for --mix")
    p.add_argument("--negative-prompt", default=None)
    p.add_argument("--mix", default="audio=1", help="weights of the blended embedding, e.g. audio=0.7,text=0.3")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--noise-level", type=int, default=0)
    p.add_argument("--device", default=None)
    p.set_defaults(func=run)


def parse_mix(text: str) -> dict[str, float]:
    weights = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in ("audio", "text") or not value:
            raise ValueError(f"--mix: expected audio=W[,text=W], got {text!r}")
        weights[name] = float(value)
    return weights


def run(args: argparse.Namespace) -> int:
    from ..generate import UNCLIP_MODEL_ID, Generator, blend_embeddings
    from ..model import WavBriVL

    weights = parse_mix(args.mix)
    model = WavBriVL.from_pretrained(args.checkpoint, device=args.device or "cpu")
    local = Path(args.checkpoint) / "generator"
    source = args.generator or (str(local) if local.is_dir() else UNCLIP_MODEL_ID)
    generator = Generator.from_pretrained(source, embed_norm=model.config.image_embed_norm, device=args.device)
    parts = {"audio": (model.embed_audio(args.audio)[0], weights.get("audio", 0.0))}
    if weights.get("text"):
        if not args.prompt:
            raise ValueError("--mix text=W needs --prompt")
        parts["text"] = (model.embed_text([args.prompt])[0], weights["text"])
    emb = blend_embeddings(parts)
    image = generator.generate(
        emb, space_id=model.backbone_id, seed=args.seed, steps=args.steps, guidance_scale=args.guidance,
        prompt=args.prompt if generator.kind == "StableUnCLIPImg2ImgPipeline" else None,
        negative_prompt=args.negative_prompt, noise_level=args.noise_level,
    )[0]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out)
    print(f"wrote {args.out} ({image.width}x{image.height}) with {generator.kind} from {source}")
    return 0
