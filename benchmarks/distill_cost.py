"""What each step of the everyday audio encoder costs in accuracy: aisfx as it ships → the distilled student →
the student with its trained head in the shared space.

The same linear probe (logistic regression, classes balanced, C = 0.1, features standardised) is fitted on the
recordings the encoder could hear (train + validation splits) and tested on the held-out sources (the test split)
for three feature sets: aisfx's trunk (mean over its 2.3-second blocks), the bundle's student trunk, and the
bundle's audio embedding. Then the bundle's own zero-shot answer (no probe at all) on the same clips. Figures are
per clip and per concept (the mean of each concept's accuracy: one speech source has a third of the clips).

    python benchmarks/distill_cost.py --bundle assets/everyday --world CACHE/world \\
        --wheel CACHE/wheels/aisfx-0.1.2-py2.py3-none-any.whl
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))



def _probe(x: np.ndarray, labels: np.ndarray, train: np.ndarray) -> dict[str, list[bool]]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from wavbrivl.metrics import class_hits

    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000, class_weight="balanced"))
    clf.fit(x[train], labels[train])
    classes = list(clf.classes_)
    return class_hits(torch.from_numpy(clf.predict_proba(x[~train])), [classes.index(y) for y in labels[~train]])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", default=str(REPO / "assets" / "everyday"))
    p.add_argument("--world", required=True, help="the prepared everyday world (CACHE/world)")
    p.add_argument("--wheel", required=True, help="the aisfx 0.1.2 wheel (CACHE/wheels/...)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from wavbrivl import WavBriVLPipeline
    from wavbrivl.timing import timed
    from wavbrivl.worlds.everyday.build import teacher_model
    from wavbrivl.worlds.everyday.evaluate import averaged, zero_shot_hits
    from wavbrivl.worlds.everyday.vetting import window_features  # the first ~15 s of a clip, as the evaluation hears it
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

    chance = {"top1": 1 / len(set(labels)), "top5": 5 / len(set(labels))}
    held = list(labels[~train])
    results: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    with timed(seconds, "aisfx"):
        teacher_windows = window_features(teacher, paths)
        results["aisfx trunk (as it ships), linear probe"] = averaged(
            _probe(np.stack([f.mean(0).numpy() for f in teacher_windows]), labels, train), held, chance)
    print(f"  aisfx: {seconds['aisfx']:.0f} s", flush=True)
    with timed(seconds, "student"):
        student_windows = window_features(student, paths)  # one pass of the trunk serves both student rows
        results["student trunk (distilled), linear probe"] = averaged(
            _probe(np.stack([f.mean(0).numpy() for f in student_windows]), labels, train), held, chance)
        with torch.no_grad():
            heads = [F.normalize(student.audio_encoder.head(f), dim=-1).mean(0).numpy() for f in student_windows]
        results["student + head (the shared space), linear probe"] = averaged(
            _probe(np.stack(heads), labels, train), held, chance)
    print(f"  student: {seconds['student']:.0f} s", flush=True)
    names = sorted(set(labels))
    embedded = torch.stack([pipe.embed(p) for p, tr in zip(paths, train) if not tr])  # the embedding the demo uses
    results[f"bundle zero-shot over the {len(names)} heard concept names (no probe)"] = averaged(
        zero_shot_hits(pipe.zero_shot_classifier(names), embedded, held), held, chance)

    print("\n| features | per clip top-1 | top-5 | per concept top-1 | top-5 |\n|---|---|---|---|---|")
    for name, s in results.items():
        print(f"| {name} | {s['top1_per_clip']:.3f} | {s['top5_per_clip']:.3f} | {s['top1']:.3f} | {s['top5']:.3f} |")
    print(f"\nchance: top-1 {chance['top1']:.3f}, top-5 {chance['top5']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
