"""``wavbrivl embed FILES...``: audio files to embeddings (a .npy plus the list of files it holds)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def add_model_arguments(p: argparse.ArgumentParser, required: bool = True) -> None:
    """``--checkpoint`` / ``--preset`` / ``--device``: shared by every command that needs a model."""
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--checkpoint", help="checkpoint folder or Hugging Face repo id")
    g.add_argument("--preset", help="named preset (tiny, vit-b-32, vit-h-14): untrained encoder")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps")


def load_model(args: argparse.Namespace):
    from ..model import WavBriVL

    if getattr(args, "checkpoint", None):
        return WavBriVL.from_pretrained(args.checkpoint, device=args.device)
    return WavBriVL.from_preset(args.preset, device=args.device)


def load_pipeline(args: argparse.Namespace, *, index=None, generator=None):
    """The bundle named by ``--checkpoint`` (or a bare ``--preset`` model) as a pipeline.

    ``index`` / ``generator``: None leaves the part out, "auto" takes the bundle's own, a path that one.
    """
    from ..index import GalleryIndex
    from ..pipeline import AUTO, WavBriVLPipeline

    if getattr(args, "checkpoint", None):
        return WavBriVLPipeline.from_pretrained(args.checkpoint, device=args.device, index=index, generator=generator)
    if generator is not None:
        raise ValueError("generation needs a trained --checkpoint (a preset's encoder is untrained)")
    return WavBriVLPipeline(load_model(args), index=GalleryIndex.load(index) if index not in (None, AUTO) else None)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("embed", help="embed audio files into the shared space")
    p.add_argument("files", nargs="+", help="audio files (wav, flac, ogg, mp3, ...)")
    add_model_arguments(p)
    p.add_argument("--out", help="write embeddings here (.npy); the file list goes to OUT.files.json")
    p.add_argument("--batch-size", type=int, default=32, help="analysis windows per forward pass")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model = load_model(args)
    result = model.embed_audio_many(args.files, batch_size=args.batch_size, progress=len(args.files) > 1)
    for _, message in result.errors:
        print(f"skipped: {message}", file=sys.stderr)
    kept = [args.files[i] for i in result.indices]
    emb = result.embeddings.numpy().astype(np.float32)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.save(out, emb)
        sidecar = out.with_name(out.name + ".files.json") if out.suffix != ".npy" else out.with_suffix(".files.json")
        sidecar.write_text(json.dumps({"backbone_id": model.backbone_id, "files": kept}, indent=1) + "\n")
        print(f"wrote {out} ({emb.shape[0]} x {emb.shape[1]}) and {sidecar}")
    else:
        for name, row in zip(kept, emb):
            print(f"{name}\t" + " ".join(f"{x:+.4f}" for x in row[:8]) + (" ..." if row.size > 8 else ""))
    print(f"embedded {len(kept)} of {len(args.files)} files; {len(result.errors)} skipped", file=sys.stderr)
    return 0 if kept else 1
