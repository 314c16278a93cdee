"""What one more recording source per concept buys the everyday bundle's audio head.

Most heard concepts have two to nine independent sources, and the ceilings (``benchmarks/ceilings.py``) put the
limit on zero-shot accuracy in the audio side. This measures the data lever directly: the world's unlabelled
corpus (used only for distillation) holds recordings whose file names say what they are (MegaGlest's pig, sheep,
elephant and bee sounds, explosions and gunshots from several games, ...). :data:`RULES` labels them; files from
a package that holds the concept's test source are left out, so the held-out source stays new. The build's
head recipe (``build.head_config``) is trained on the bundle's student with and without them, the head
re-initialised from the same seed for both arms, and both are scored on the held-out sources exactly as the
report scores the bundle (zero-shot over all concept names with the bundle's prompts, R@k over the bundle's
gallery), per concept: the concepts that gained a source, the others, and all heard ones.

    python benchmarks/sources.py --world CACHE/world [--seeds 0 1 2] [--work DIR]

``--added-source SOURCE`` measures a source the world already holds instead (the curated library,
``scratch:media-library``; vetted files, ``<package>:named-files``): the arms are the world without that source's
training rows and the world as prepared, so "gained" are the concepts it feeds.

    python benchmarks/sources.py --world CACHE/world --added-source scratch:media-library --seeds 0 1

About 2 min per head on 2 cores (six heads by default).
"""
from __future__ import annotations

import argparse
import csv
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

#: concept -> pattern over ``package/path`` of corpus files (lower case) that are recordings of it. Chosen from
#: file names, not by listening, so kept narrow: hydrogen's "splash" is a cymbal, wesnoth's "drake" a dragon.
RULES = {
    "elephant": r"^megaglest-data/.*/ele\d",
    "pig": r"^megaglest-data/.*/pig_",
    "sheep": r"^megaglest-data/.*/sheep",
    "buzzing insects": r"/(bee\d|wasp)\.",
    "explosion": r"/[^/]*(explo|blast)[^/]*$",
    "gunshot": r"/[^/]*(gunshot|pistol|rifle|primary)[^/]*$",
    "water splash": r"^(?!hydrogen).*/[^/]*splash[^/]*$",
    "coughing": r"/[^/]*cough[^/]*$",
}
SKIP = re.compile(r"reload")


def write_absolute(world_root: Path, rows: list[dict[str, str]], path: Path) -> Path:
    """``rows`` (world manifest rows) written to ``path`` with their audio and image paths made absolute, so the
    trainer reads the world's files from a manifest kept elsewhere."""
    for r in rows:
        r["audio"] = str(world_root / r["audio"])
        r["image"] = "|".join(str(world_root / p) for p in r["image"].split("|") if p)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def more_sources_manifest(world_root: Path, out: Path) -> tuple[Path, dict[str, int]]:
    """The world's manifest plus the corpus files :data:`RULES` names, as training rows (absolute paths)."""
    with open(world_root / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(world_root / "corpus.csv", newline="") as f:
        corpus = list(csv.DictReader(f))
    test_packages, images, heard = defaultdict(set), {}, {}
    for r in rows:
        if r["split"] == "test":
            test_packages[r["label"]].add(r["package"])
        images.setdefault(r["label"], r["image"])
        heard[r["label"]] = r["heard"]

    added: dict[str, int] = defaultdict(int)
    extra = []
    for concept, pattern in RULES.items():
        for c in corpus:
            key = f"{c['package']}/{c['path']}".lower()
            if re.search(pattern, key) and not SKIP.search(key) and c["package"] not in test_packages[concept]:
                extra.append({"audio": c["audio"], "image": images[concept], "caption": concept, "label": concept,
                              "split": "train", "heard": heard[concept], "source": f"corpus:{c['package']}",
                              "package": c["package"], "version": c["version"], "licence": c["licence"], "kind": "recording"})
                added[concept] += 1
    return write_absolute(world_root, rows + extra, out / "manifest_more_sources.csv"), dict(added)


def without_source_manifest(world_root: Path, source: str, out: Path) -> tuple[Path, dict[str, int]]:
    """The world's manifest without the training rows of ``source`` (absolute paths), and what it removed."""
    with open(world_root / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    removed = Counter(r["label"] for r in rows if r["source"] == source and r["split"] == "train")
    if not removed:
        raise SystemExit(f"{world_root / 'manifest.csv'}: no training rows with source {source!r}")
    kept = [r for r in rows if not (r["source"] == source and r["split"] == "train")]
    return write_absolute(world_root, kept, out / "manifest_without_source.csv"), dict(removed)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", default=str(REPO / "assets" / "everyday"))
    p.add_argument("--world", required=True, help="the prepared everyday world (CACHE/world)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--work", help="folder for the heads (default: a temporary one)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--added-source", help="compare the world without this source's training rows against the world")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from wavbrivl import WavBriVL, WavBriVLPipeline
    from wavbrivl.train import train
    from wavbrivl.worlds.everyday.build import EverydaySettings, head_config
    from wavbrivl.metrics import class_hits
    from wavbrivl.worlds.everyday.evaluate import averaged, gallery_chance, retrieval_hits
    from wavbrivl.worlds.everyday.world import EverydayWorld

    world_root = Path(args.world).resolve()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="wavbrivl-sources-"))
    world = EverydayWorld.load(world_root)
    pipe = WavBriVLPipeline.from_pretrained(args.bundle, device="cpu")
    names = world.names
    classifier = pipe.zero_shot_classifier(names)
    gallery_labels = [m["caption"] for m in pipe.index.meta if m["kind"] == "image"]
    test = [r for r in world.split("test") if world.concept(r.label).heard]
    if args.added_source:
        manifest, added = without_source_manifest(world_root, args.added_source, work)
        print(f"{args.added_source} training files:", ", ".join(f"{c} {n}" for c, n in added.items()), flush=True)
        arms = {"without": (f"without {args.added_source}", manifest),
                "world": ("the world as prepared", world_root / "manifest.csv")}
    else:
        manifest, added = more_sources_manifest(world_root, work)
        print("corpus files labelled:", ", ".join(f"{c} {n}" for c, n in added.items()), flush=True)
        arms = {"world": ("the world's sources", world_root / "manifest.csv"), "more": ("+ labelled corpus files", manifest)}
    settings = EverydaySettings()

    def score(model: WavBriVL) -> dict[str, Any]:
        embedded = model.embed_audio_many([r.audio for r in test], batch_size=64)
        labels = [test[i].label for i in embedded.indices]
        scores = classifier.scores(embedded.embeddings)
        hits = class_hits(scores, [names.index(c) for c in labels])
        hits |= retrieval_hits(pipe.index.search(embedded.embeddings, 5, kind="image"), labels)
        out = {}
        groups = (("gained", lambda c: c in added), ("others", lambda c: c not in added), ("all heard", lambda c: True))
        for group, keep in groups:
            idx = [i for i, c in enumerate(labels) if keep(c)]
            group_labels = [labels[i] for i in idx]
            chance = {"top1": 1 / len(names), "top5": 5 / len(names)} | gallery_chance(group_labels, gallery_labels)
            out[group] = averaged({k: [v[i] for i in idx] for k, v in hits.items()}, group_labels, chance)
        # The held-out speech source is a third of the clips: what its clips are named, the first thing a
        # per-concept average hides.
        answers = scores.argmax(1).tolist()
        out["speech"] = Counter(names[a] for a, c in zip(answers, labels) if c == "speech").most_common(2)
        return out

    results: dict[str, list[dict]] = defaultdict(list)
    for seed in args.seeds:
        init = work / f"init{seed}"
        if not init.exists():
            model = WavBriVL.from_pretrained(args.bundle)
            torch.manual_seed(seed)  # the same fresh head for both arms
            for module in model.audio_encoder.head.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
            model.save_pretrained(init)
        for key, (arm, path) in arms.items():
            t = time.perf_counter()
            run = train(head_config(settings, path, work / f"run-{key}-{seed}", init, work / "cache", seed=seed))
            for checkpoint, folder in (("last step", run.last_dir), ("best on validation", run.best_dir)):
                results[f"{arm}, {checkpoint}"].append(score(WavBriVL.from_pretrained(folder).eval()))
            print(f"seed {seed}, {arm}: {time.perf_counter() - t:.0f} s", flush=True)

    print("\nheld-out sources, per concept, mean over seeds "
          f"{args.seeds}: zero-shot top-1 / top-5 | audio->picture R@1 / R@5")
    for arm, runs in results.items():
        cells = []
        for group in ("gained", "others", "all heard"):
            m = {k: np.mean([r[group][k] for r in runs]) for k in ("top1", "top5", "R@1", "R@5")}
            n = runs[0][group]["concepts"]
            cells.append(f"{group} ({n}): {m['top1']:.3f} / {m['top5']:.3f} | {m['R@1']:.3f} / {m['R@5']:.3f}")
        print(f"{arm:50s} " + "; ".join(cells))
        print(" " * 51 + "per seed, all heard: top-1 per concept " + ", ".join(f"{r['all heard']['top1']:.3f}" for r in runs)
              + "; per clip " + ", ".join(f"{r['all heard']['top1_per_clip']:.3f}" for r in runs))
        print(" " * 51 + "held-out speech clips named: " + "; ".join(", ".join(f"{a} {n}" for a, n in r["speech"]) for r in runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
