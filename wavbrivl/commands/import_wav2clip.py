"""``wavbrivl import-wav2clip PATH OUT_DIR``: turn Wav2CLIP's published weights into a checkpoint."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import-wav2clip",
        help="convert Wav2CLIP weights (ResNet-18 + MLP, CLIP ViT-B/32 space) into a wavbrivl checkpoint",
    )
    p.add_argument("path", help="Wav2CLIP checkpoint (.ckpt/.pt state dict, or .safetensors)")
    p.add_argument("out_dir", help="checkpoint folder to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..wav2clip import import_wav2clip

    model = import_wav2clip(args.path, args.out_dir)
    print(f"wrote {args.out_dir}: Wav2CLIP encoder, {model.embed_dim}-d, space {model.backbone_id}")
    return 0
