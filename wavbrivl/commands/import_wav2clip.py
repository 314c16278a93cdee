"""``wavbrivl import-wav2clip PATH OUT_DIR``: turn Wav2CLIP's published weights into a checkpoint."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "import-wav2clip",
        help="convert Wav2CLIP weights (ResNet-18 + MLP, CLIP ViT-B/32 space) into a wavbrivl checkpoint",
    )
    p.add_argument("path", help="Wav2CLIP checkpoint (.ckpt/.pt state dict, or .safetensors), or its URL (downloaded into "
                   "the Hugging Face cache folder and SHA-256 checked)")
    p.add_argument("--sha256", help="expected SHA-256 of the checkpoint (default: the one recorded at its first download)")
    p.add_argument("out_dir", help="checkpoint folder to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..hub import url_file
    from ..wav2clip import import_wav2clip

    path = url_file(args.path, sha256=args.sha256) if "://" in args.path else args.path
    model = import_wav2clip(path, args.out_dir)
    print(f"wrote {args.out_dir}: Wav2CLIP encoder, {model.embed_dim}-d, space {model.backbone_id}")
    return 0
