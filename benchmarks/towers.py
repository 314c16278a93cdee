"""How long the frozen towers take on a CPU, and so what retargeting a bundle into a space costs on a CPU Space.

Retargeting (``app.py --real vit-h-14`` at first boot, ``wavbrivl retarget``) sends every distinct picture and
caption of the bundle's pairs, and its gallery, through the new space's frozen towers once; the head's training
afterwards reads the cached embeddings and costs seconds. On a CPU Space (2 vCPU) that embedding pass is the
wait, so this measures it rather than guessing:

* the image tower per picture at batch 32 and batch 1 (224 px), and the text tower per caption (batch 32),
  for a ViT-B-32-sized and a ViT-H-14-sized open_clip model with random weights
  (``open_clip.create_model(name, pretrained=None)``: the same architecture and arithmetic as the real
  weights, nothing downloaded);
* then the embedding time of retargeting the everyday bundle: the distinct pictures and captions of
  ``assets/everyday/pairs`` plus its gallery when the bundle carries pairs, else the counts given
  (``--images``, ``--captions``) or read from its data card.

    python benchmarks/towers.py                   # both towers, 2 threads (a CPU Basic Space has 2 vCPU)
    python benchmarks/towers.py --models ViT-B-32 --threads 4
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUNDLE = REPO / "assets" / "everyday"


def seconds_per_item(fn, items: int, repeats: int) -> float:
    """The best of ``repeats`` timed calls of ``fn`` (after one warm-up), divided by ``items``: the fastest run is
    the machine's speed, slower ones measure other processes sharing it."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best / items


def time_towers(name: str, batch: int, repeats: int) -> dict[str, float]:
    """Seconds per picture (batch ``batch`` and 1) and per caption (batch ``batch``) for open_clip model ``name``."""
    import open_clip
    import torch

    t0 = time.perf_counter()
    model = open_clip.create_model(name, pretrained=None).eval()
    build = time.perf_counter() - t0
    tokenizer = open_clip.get_tokenizer(name)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    pixels = torch.randn(batch, 3, size, size)
    tokens = tokenizer([f"the sound of a barking dog number {i}" for i in range(batch)])
    with torch.inference_mode():
        image_batch = seconds_per_item(lambda: model.encode_image(pixels), batch, repeats)
        image_one = seconds_per_item(lambda: model.encode_image(pixels[:1]), 1, max(repeats, 3))
        text = seconds_per_item(lambda: model.encode_text(tokens), batch, repeats)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    return {"params_m": params, "build_s": build, "image_s_batch": image_batch, "image_s_one": image_one, "text_s": text}


def everyday_counts(images: int | None, captions: int | None) -> tuple[int, int, str]:
    """Pictures and captions retargeting the everyday bundle embeds: its pairs (distinct) plus its gallery."""
    pairs = BUNDLE / "pairs" / "manifest.csv"
    gallery = len(list((BUNDLE / "gallery").glob("*"))) if (BUNDLE / "gallery").is_dir() else 0
    if images is None and captions is None and pairs.is_file():
        with open(pairs, newline="") as f:
            rows = list(csv.DictReader(f))
        pictures = {p for r in rows for p in (r.get("image") or "").split("|") if p}
        texts = {r["caption"] for r in rows if r.get("caption")}
        return len(pictures) + gallery, len(texts), f"assets/everyday/pairs ({len(rows)} rows) + gallery ({gallery})"
    if images is None or captions is None:
        card = json.loads((BUNDLE / "data_card.json").read_text())
        pictures = card["summary"]["pictures"]
        aliases = sum(len(c.get("aliases") or [c["name"]]) for c in card["concepts"])
        images = images if images is not None else pictures["fit"] + pictures["gallery"]
        captions = captions if captions is not None else aliases
        return images, captions, ("assets/everyday has no pairs/ yet: counts from its data card (training pictures "
                                  "+ gallery; captions taken as one per concept alias)")
    return images, captions, "counts given on the command line"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["ViT-B-32", "ViT-H-14"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=1, help="timed runs per measurement (the best is kept)")
    p.add_argument("--images", type=int, help="pictures to embed (default: the everyday bundle's)")
    p.add_argument("--captions", type=int, help="captions to embed (default: the everyday bundle's)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    images, captions, where = everyday_counts(args.images, args.captions)
    print(f"{args.threads} threads; retargeting the everyday bundle embeds {images} pictures and {captions} captions ({where})")
    results = {}
    for name in args.models:
        r = time_towers(name, args.batch, args.repeats)
        total = images * r["image_s_batch"] + captions * r["text_s"]
        r.update(retarget_embedding_s=total)
        results[name] = r
        print(f"{name}: {r['params_m']:.0f} M parameters (built in {r['build_s']:.1f} s); image tower "
              f"{r['image_s_batch'] * 1000:.0f} ms per picture at batch {args.batch}, "
              f"{r['image_s_one'] * 1000:.0f} ms at batch 1; "
              f"text tower {r['text_s'] * 1000:.1f} ms per caption; retargeting would spend {total / 60:.1f} min embedding",
              flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "images": images, "captions": captions,
                                               "counts_from": where, "models": results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
