"""``wavbrivl retarget --bundle DIR --backbone SPEC --out DIR``: a bundle's sounds in another frozen embedding space."""
from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "retarget",
        help="train a fresh audio head into another frozen backbone's space from a bundle's own training pairs",
        description="Embed the bundle's training pairs with a new frozen backbone (cached), train a fresh head on the "
                    "frozen trunk with the bundle's recipe, index its gallery in the new space, evaluate on the pairs' "
                    "test split and write a complete bundle.")
    p.add_argument("--bundle", required=True, help="bundle folder carrying pairs/ (or a hub id)")
    p.add_argument("--backbone", required=True,
                   help="preset (tiny, vit-b-32, vit-h-14), 'bundle' (the bundle's own frozen backbone), "
                        "or an open_clip 'hf-hub:ORG/REPO' or 'local-dir:PATH' spec")
    p.add_argument("--out", required=True, help="the new bundle's folder (replaced once the new bundle is whole)")
    p.add_argument("--trunk", default="bundle",
                   help="'bundle' (the bundle's own trunk, default) or 'wav2clip:CKPT' (the published Wav2CLIP trunk)")
    p.add_argument("--steps", type=int, help="training steps (default: the bundle's recipe)")
    p.add_argument("--seed", type=int, help="seed of the head's initialisation and training (default: the recipe's)")
    p.add_argument("--cache-dir", help="frozen-embedding cache (default: $WAVBRIVL_CACHE or ~/.cache/wavbrivl/embeddings)")
    p.add_argument("--device", help="cpu, cuda ... (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ..pipeline import WavBriVLPipeline

    source = WavBriVLPipeline.from_pretrained(args.bundle, device=args.device or "cpu", generator=None)
    pipe = source.retarget(args.backbone, args.out, trunk=args.trunk, steps=args.steps, seed=args.seed,
                           cache_dir=args.cache_dir, device=args.device, progress=not args.no_progress)
    report = json.loads((pipe.model.root / "report.json").read_text())
    zeroshot, retrieval = report.get("zeroshot", {}), report.get("retrieval", {}).get("audio_to_image", {})
    print(f"wrote {pipe.model.root}: space {pipe.backbone_id} ({pipe.embed_dim}-d); test split zero-shot top-1 "
          f"{zeroshot.get('top1', float('nan')):.3f}, audio→picture R@1 {retrieval.get('R@1', float('nan')):.3f}")
    for task, why in report.get("skipped_tasks", {}).items():
        print(f"skipped {task}: {why}")
    return 0
