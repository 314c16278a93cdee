"""How far the everyday bundle could go if its audio encoder were perfect: the ceilings its other parts set.

The bundle's report measures the whole chain (sound -> embedding -> nearest drawings / concept words / painted
picture). A miss there can come from the audio encoder, or from the frozen image tower, the generator or the
drawing judge that the chain passes through. This script replaces the sound by the point the audio head is
trained to reach — each concept's training drawings' mean embedding moved ``caption_weight`` of the way to its
name (``train.toward_text``, the trainer's own definition), or the concept's words alone — and measures:

* **audio -> picture ceiling**: whether the nearest held-out gallery drawings to that point show the concept
  (R@1 / R@5 per concept, as the report counts them);
* **zero-shot ceiling**: whether that point is named its concept over all concept names (prompt templates);
* **drawing -> words**: the frozen space read the other way (each held-out drawing classified over the concept
  names with the bundle's prompt templates);
* **generation ceiling**: pictures painted from that point (``--per-concept`` seeds each), named by a drawing
  judge trained on the real drawings exactly as the report's is; beside it, the same judge on the held-out real
  drawings, the most a painted picture could hope for.

    python benchmarks/ceilings.py --bundle assets/everyday --world CACHE/world
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", default=str(REPO / "assets" / "everyday"))
    p.add_argument("--world", required=True, help="the prepared everyday world (CACHE/world)")
    p.add_argument("--per-concept", type=int, default=3, help="pictures painted from each concept's point")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from wavbrivl import WavBriVLPipeline
    from wavbrivl.train import toward_text
    from wavbrivl.metrics import class_hits
    from wavbrivl.timing import timed
    from wavbrivl.worlds.everyday.evaluate import (averaged, gallery_chance, generate_and_judge, judge_hits, retrieval_hits,
                                                   train_judge)
    from wavbrivl.worlds.everyday.world import EverydayWorld, load_pictures

    report = json.loads((Path(args.bundle) / "report.json").read_text())
    settings = report["build"]["settings"]
    world = EverydayWorld.load(args.world)
    pipe = WavBriVLPipeline.from_pretrained(args.bundle, device="cpu")
    model, names, n = pipe.model, world.names, len(world.names)
    fit = [q for q in world.pictures if q.split == "fit"]
    fit_labels = np.array([q.label for q in fit])
    gallery_labels = [m["caption"] for m in pipe.index.meta if m["kind"] == "image"]
    chance = {"top1": 1 / n, "top5": 5 / n}
    seconds: dict[str, float] = {}
    with timed(seconds, "frozen space"):
        with torch.no_grad():
            fit_emb = model.embed_image([q.path for q in fit])  # unit embeddings
            drawings = F.normalize(torch.stack([fit_emb[torch.from_numpy(fit_labels == c)].mean(0) for c in names]), dim=-1)
            classifier = pipe.zero_shot_classifier(names)
            points = {f"drawings x{1 - settings['caption_weight']:g} + name x{settings['caption_weight']:g} (the head's target)":
                      toward_text(model, drawings, names, settings["caption_weight"]),
                      "the concept's words (prompt ensemble)": classifier.embeddings}
            held = [q for q in world.pictures if q.split == "gallery"]
            held_emb = model.embed_image([q.path for q in held])
        rows: list[tuple[str, str, dict]] = []
        for name, point in points.items():
            top5 = pipe.index.search(point, 5, kind="image")
            hits = retrieval_hits(top5, names)
            rows.append(("audio -> picture ceiling", name, averaged(hits, names, gallery_chance(names, gallery_labels))))
            rows.append(("zero-shot ceiling", name,
                         averaged(class_hits(classifier.scores(point), list(range(n))), names, chance)))
        held_labels = [q.label for q in held]
        rows.append(("drawing -> words", "held-out gallery drawings", averaged(
            class_hits(classifier.scores(held_emb), [names.index(x) for x in held_labels]), held_labels, chance)))
    print(f"frozen space: {seconds['frozen space']:.0f} s", flush=True)

    with timed(seconds, "judge"):
        size = int(settings["judge_size"])
        judge = train_judge(load_pictures([q.path for q in fit], size), [names.index(x) for x in fit_labels], n,
                            steps=int(settings["judge_steps"]), seed=int(settings["seed"]))
        rows.append(("generation ceiling", "judge on the held-out real drawings", averaged(
            judge_hits(judge, load_pictures([q.path for q in held], size), [names.index(x) for x in held_labels]),
            held_labels, chance)))
    print(f"judge: {seconds['judge']:.0f} s", flush=True)
    with timed(seconds, "generation"):
        for name, point in points.items():
            labels = [c for c in names for _ in range(args.per_concept)]
            _, judged, _ = generate_and_judge(pipe, point.repeat_interleave(args.per_concept, dim=0), labels, names, judge,
                                              seed=int(settings["seed"]))
            rows.append(("generation ceiling", f"judge on pictures painted from {name}", averaged(judged, labels, chance)))
    print(f"generation: {seconds['generation']:.0f} s", flush=True)

    heard = report["heard"]
    print("\n| ceiling | from | top-1 / R@1 | top-5 / R@5 | chance |\n|---|---|---|---|---|")
    for what, name, s in rows:
        k1, k5 = ("R@1", "R@5") if "R@1" in s else ("top1", "top5")
        print(f"| {what} | {name} | {s[k1]:.3f} | {s[k5]:.3f} | {s['chance_' + k1]:.3f} / {s['chance_' + k5]:.3f} |")
    print(f"\nthe bundle with its real audio encoder (heard concepts, held-out sources): audio -> picture R@1 "
          f"{heard['audio_to_picture']['R@1']:.3f} R@5 {heard['audio_to_picture']['R@5']:.3f}; zero-shot top-1 "
          f"{heard['zeroshot']['top1']:.3f}; generation judge top-5 {heard['generation_judge']['top5']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
