"""What each step of the everyday audio encoder costs in accuracy: aisfx as it ships → the distilled student →
the student with its trained head in the shared space.

The same linear probe (logistic regression, classes balanced, C = 0.1, features standardised) is fitted on the
recordings the encoder could hear (train + validation splits) and tested on the held-out sources (the test split)
for three feature sets: aisfx's trunk (mean over its 2.3-second blocks), the bundle's student trunk, and the
bundle's audio embedding. Then the bundle's own zero-shot answer (no probe at all) on the same clips. Figures are
per clip and per concept (the mean of each concept's accuracy: one speech source has a third of the clips).

    python benchmarks/distill_cost.py --bundle assets/everyday --world CACHE/world --wheel CACHE/wheels/aisfx-0.1.2-py2.py3-none-any.whl
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

MAX_BLOCKS = 13  # the first ~15 s of a clip, as the bundle's evaluation embeds it


def _features(model, paths: list[Path], *, head: bool) -> np.ndarray:
    """Mean over a clip's windows of the trunk's features (or of the unit-norm embeddings, ``head=True``)."""
    from wavbrivl.audio import iter_windows

    out = []
    with torch.no_grad():
        for path in paths:
            windows = torch.stack([w for w, _ in iter_windows(path, model.config.frontend)][:MAX_BLOCKS])
            feats = model.audio_encoder.audio_encoder(model.frontend(windows))
            if head:
                feats = torch.nn.functional.normalize(model.audio_encoder.audio_transform(feats), dim=-1)
            out.append(feats.mean(0).numpy())
    return np.stack(out)


def _scores(labels: np.ndarray, ranked: list[list[str]]) -> dict[str, float]:
    top1 = np.array([r[0] == y for r, y in zip(ranked, labels)])
    top5 = np.array([y in r[:5] for r, y in zip(ranked, labels)])
    by: dict[str, list[int]] = defaultdict(list)
    for i, y in enumerate(labels):
        by[y].append(i)
    return {"clip_top1": top1.mean(), "clip_top5": top5.mean(),
            "concept_top1": np.mean([top1[i].mean() for i in by.values()]),
            "concept_top5": np.mean([top5[i].mean() for i in by.values()])}


def _probe(x: np.ndarray, labels: np.ndarray, train: np.ndarray) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000, class_weight="balanced"))
    clf.fit(x[train], labels[train])
    proba = clf.predict_proba(x[~train])
    classes = clf.classes_
    return _scores(labels[~train], [list(classes[np.argsort(-p)]) for p in proba])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", default=str(REPO / "assets" / "everyday"))
    p.add_argument("--world", required=True, help="the prepared everyday world (CACHE/world)")
    p.add_argument("--wheel", required=True, help="the aisfx 0.1.2 wheel (CACHE/wheels/...)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from wavbrivl import WavBriVLPipeline
    from wavbrivl.worlds.everyday.build import teacher_model
    from wavbrivl.worlds.everyday.world import EverydayWorld

    world = EverydayWorld.load(args.world)
    rows = [r for r in world.rows if world.concept(r.label).heard]
    labels = np.array([r.label for r in rows])
    train = np.array([r.split != "test" for r in rows])
    paths = [r.audio for r in rows]
    pipe = WavBriVLPipeline.from_pretrained(args.bundle, index=None, generator=None)
    student = pipe.model.eval()
    teacher = teacher_model(student.config.backbone, student.embed_dim, Path(args.wheel))
    print(f"{len(rows)} recordings of {len(set(labels))} heard concepts; {int((~train).sum())} held-out clips from "
          f"sources the encoder never heard", flush=True)

    results: dict[str, dict[str, float]] = {}
    for name, model, head in (("aisfx trunk (as it ships), linear probe", teacher, False),
                              ("student trunk (distilled), linear probe", student, False),
                              ("student + head (the shared space), linear probe", student, True)):
        t = time.perf_counter()
        results[name] = _probe(_features(model, paths, head=head), labels, train)
        print(f"  {name}: {time.perf_counter() - t:.0f} s", flush=True)
    names = sorted(set(labels))
    held = [r for r, tr in zip(rows, train) if not tr]
    ranked = [list(pipe.classify(r.audio, names)) for r in held]
    results[f"bundle zero-shot over the {len(names)} heard concept names (no probe)"] = _scores(labels[~train], ranked)

    print("\n| features | per clip top-1 | top-5 | per concept top-1 | top-5 |\n|---|---|---|---|---|")
    for name, s in results.items():
        print(f"| {name} | {s['clip_top1']:.3f} | {s['clip_top5']:.3f} | {s['concept_top1']:.3f} | {s['concept_top5']:.3f} |")
    print(f"\nchance: top-1 {1 / len(names):.3f}, top-5 {5 / len(names):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
