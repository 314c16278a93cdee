"""The everyday bundle's evaluation, on recordings from sources its audio encoder never trained on.

* **Audio -> picture retrieval** over the gallery (held-out drawings): a hit at k when one of the k nearest
  pictures shows the sound's concept; chance is what a random ranking of the same gallery gives.
* **Zero-shot classification** over every concept's label (its caption, "a dog barking"; heard and never
  heard), through the pipeline's classifier with the bundle's prompt templates: what the demo's label chart shows.
* **Calibration**: the zero-shot scale is fitted on the validation split (:func:`calibrate_bundle`, the build
  stores it in the card); the report gives ECE, mean top-1 probability and top-1 accuracy on the test clips at
  the backbone's own scale and at the fitted one.
* **Generation**: a picture painted from each sound's embedding, judged by a drawing classifier trained only
  on real drawings (:class:`DrawingJudge`, not the frozen tower that conditioned the generator; its accuracy on
  held-out drawings is reported so the judge can be judged), and by the frozen image tower for comparison.
  The judge belongs to the world, not to a build: :func:`world_judge` trains it once per world and keeps it in
  the world folder, so every build of a world is judged by the same instrument.

Heard and never-heard concepts are reported apart; every figure comes with its chance level.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from safetensors.torch import load_model, save_model
from tqdm.auto import tqdm

from ... import optim
from ...bundle import Calibration
from ...calibration import calibration_report, fit_calibration
from ...judging import paint_and_judge, tower_judge
from ...metrics import class_hits
from ...timing import timed
from ...zeroshot import ZeroShotClassifier
from .backbone import augment_pictures
from .world import load_pictures

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- the judge
class DrawingJudge(nn.Module):
    """A small CNN that names the concept of a drawing, trained from scratch on the world's real drawings only."""

    def __init__(self, n_classes: int, width: int = 32, size: int = 64) -> None:
        super().__init__()
        self.size = size  # the side of the pictures it reads
        layers: list[nn.Module] = []
        cin = 3
        for cout in (width, width * 2, width * 4, width * 8):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                       nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.classify = nn.Sequential(nn.Dropout(0.3), nn.Linear(cin, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] ``[B, 3, S, S]`` -> class logits."""
        return self.classify(self.features(x * 2 - 1).mean(dim=(2, 3)))


def train_judge(pictures: torch.Tensor, labels: Sequence[int], n_classes: int, *, steps: int = 1500, batch_size: int = 64,
                lr: float = 2e-3, seed: int = 0, width: int = 32, progress: bool = False) -> DrawingJudge:
    """Fit :class:`DrawingJudge` on uint8 pictures ``[N, 3, S, S]`` with their concept indices."""
    torch.manual_seed(seed)
    judge = DrawingJudge(n_classes, width=width, size=pictures.shape[-1])
    x_all, y_all = pictures.float() / 255, torch.as_tensor(labels)
    opt = torch.optim.AdamW(judge.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=max(steps, 1), pct_start=0.1)
    g = torch.Generator().manual_seed(seed)
    judge.train()
    for _ in tqdm(range(steps), desc="training the drawing judge", disable=not progress):
        idx = torch.randint(0, len(x_all), (min(batch_size, len(x_all)),), generator=g)
        loss = F.cross_entropy(judge(augment_pictures(x_all[idx], g)), y_all[idx], label_smoothing=0.1)
        optim.step(loss, opt, sched)
    return judge.eval()


def world_judge(world, *, size: int = 64, steps: int = 1500, seed: int = 0, progress: bool = False) -> DrawingJudge:
    """The world's drawing judge, trained on its real ``fit`` drawings the first time and kept in
    ``<world>/judges/`` after that. It depends on nothing a build trains, so building again (another recipe, another
    seed of the head) reuses it instead of paying its training again (about 14.5 min at 64 px on two cores), and
    every build of the world is scored by the same instrument. The file is keyed by everything the judge is trained
    from (the decoded drawings, their labels, the concept list, steps, seed), so a new prepare or setting trains a
    new one; a world folder that cannot be written to only loses the cache."""
    names = world.names
    fit = [p for p in world.pictures if p.split == "fit"]
    pixels = load_pictures([p.path for p in fit], size)
    labels = [names.index(p.label) for p in fit]
    key = hashlib.sha256(pixels.numpy().tobytes())
    key.update(json.dumps([labels, list(names), steps, seed, torch.__version__]).encode())
    path = Path(world.root) / "judges" / f"drawing-judge-{size}px-{key.hexdigest()[:16]}.safetensors"
    judge = DrawingJudge(len(names), size=size)
    if path.is_file():
        load_model(judge, str(path))
        log.info("drawing judge: the world's own, %s", path)
        return judge.eval()
    took: dict[str, float] = {}
    with timed(took, "train"):
        judge = train_judge(pixels, labels, len(names), steps=steps, seed=seed, progress=progress)
    log.info("drawing judge trained on %d real drawings in %.0f s", len(fit), took["train"])
    try:
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(".part")
        save_model(judge, str(tmp))
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("drawing judge: could not keep it in %s (%s); the next build trains it again", path.parent, exc)
    return judge


def judge_on_held_out_drawings(judge: DrawingJudge, world) -> dict[str, Any]:
    """How well the judge names the world's held-out real drawings (the ``gallery`` split), per concept with chance:
    what a generated picture's score is read against."""
    held = [p for p in world.pictures if p.split == "gallery"]
    labels = [p.label for p in held]
    hits = judge_hits(judge, load_pictures([p.path for p in held], judge.size), [world.names.index(x) for x in labels])
    return averaged(hits, labels, {"top1": 1 / len(world.names), "top5": 5 / len(world.names)})


@torch.inference_mode()
def judge_hits(judge: DrawingJudge, pictures: torch.Tensor, labels: Sequence[int]) -> dict[str, list[bool]]:
    """Whether the judge names each picture's concept first, and among its first five."""
    logits = torch.cat([judge(pictures[i : i + 128].float() / 255) for i in range(0, len(pictures), 128)])
    return class_hits(logits, labels)


def picture_pixels(images: Sequence[Any], size: int) -> torch.Tensor:
    """Generated pictures as the judge reads them: uint8 ``[N, 3, size, size]``."""
    return torch.stack([torch.from_numpy(np.asarray(im.convert("RGB").resize((size, size))).copy())
                        for im in images]).permute(0, 3, 1, 2)


# ----------------------------------------------------------------------------------------------- figures
def averaged(hits: dict[str, Sequence[bool]], labels: Sequence[str], chance: dict[str, float]) -> dict[str, Any]:
    """Each figure averaged over clips and over concepts (each concept's clips first, then the concepts), with
    its chance level. Test sources hold very different numbers of clips (docs/EXPERIMENTS.md), so the
    per-concept average is the headline: every concept counts once."""
    lab = np.asarray(labels)
    out: dict[str, Any] = {"clips": len(lab), "concepts": len(set(labels))}
    for name, values in hits.items():
        v = np.asarray(values, dtype=float)
        out[name] = float(np.mean([v[lab == c].mean() for c in sorted(set(labels))]))
        out[f"{name}_per_clip"] = float(v.mean())
        out[f"chance_{name}"] = chance[name]
    return out


def retrieval_hits(results: Sequence[Sequence[Any]], labels: Sequence[str]) -> dict[str, list[bool]]:
    """Whether a picture of each query's concept is the first of its search results (index hits with a
    ``caption``), and among the first five: the audio -> picture R@1 / R@5 of the report."""
    return {f"R@{k}": [any(h.caption == label for h in hits[:k]) for hits, label in zip(results, labels)] for k in (1, 5)}


def zero_shot_hits(classifier: ZeroShotClassifier, audio: torch.Tensor, labels: Sequence[str]) -> dict[str, list[bool]]:
    return class_hits(classifier.scores(audio), [classifier.labels.index(label) for label in labels])


def generate_and_judge(pipeline, audio: torch.Tensor, labels: Sequence[str], names: Sequence[str], judge: DrawingJudge,
                       class_labels: Sequence[str] | None = None, *, seed: int = 0,
                       batch: int = 16) -> tuple[torch.Tensor, dict[str, list[bool]], dict[str, list[bool]]]:
    """One picture per sound embedding, and whether the drawing judge and the frozen tower name its concept
    (the tower zero-shot over ``class_labels``, the concepts' labels in the order of ``names``; default: names)."""
    truth = [list(names).index(label) for label in labels]
    class_labels = list(class_labels or names)
    tower = pipeline.zero_shot_classifier(class_labels)
    images, verdicts = paint_and_judge(pipeline, audio, {
        "judge": lambda images: judge_hits(judge, picture_pixels(images, judge.size), truth),
        "tower": tower_judge(pipeline, tower, [tower.labels.index(class_labels[i]) for i in truth])}, seed=seed, batch=batch)
    return picture_pixels(images, judge.size), verdicts["judge"], verdicts["tower"]


# ----------------------------------------------------------------------------------------------- the bundle
def bundle_labels(card_labels: Sequence[str], world) -> dict[str, str]:
    """Each concept's label in the bundle's vocabulary: its caption ("a dog barking"), or its bare name for a
    bundle built before the catalogue had captions (so ``wavbrivl world everyday eval`` still reads those)."""
    labels = set(card_labels)
    return {c.name: c.caption if c.caption in labels else c.name for c in world.concepts}


def calibrate_bundle(bundle, world, *, progress: bool = False) -> tuple[Calibration, dict[str, Any]]:
    """Fit the bundle's zero-shot scale on the world's validation split (sources the audio head was validated on,
    never trained on; the test sources stay untouched for the report), over all the card's labels and templates.

    Returns the card's :class:`~wavbrivl.bundle.Calibration` and the fit's figures before and after. Without
    validation clips the scale is left as the backbone's and the figures say why."""
    from ...pipeline import WavBriVLPipeline

    pipeline = WavBriVLPipeline.from_pretrained(bundle, device="cpu", index=None, generator=None)
    label_of = bundle_labels(pipeline.card.labels, world)
    val = world.split("val")
    embedded = pipeline.model.embed_audio_many([r.audio for r in val], batch_size=64, progress=progress)
    rows = [val[i] for i in embedded.indices]
    if not rows:
        return Calibration(fitted_on="not fitted: the world has no validation clips"), {"clips": 0, "fitted": False}
    labels = [label_of[r.label] for r in rows]
    fit = fit_calibration(pipeline, embedded.embeddings, labels, class_labels=[label_of[n] for n in world.names])
    before, after = fit.report["before"], fit.report["after"]
    fitted_on = (f"validation split: {len(rows)} clips of {len(set(labels))} concepts among {fit.report['classes']} labels; "
                 f"ECE {before['ece']:.3f} -> {after['ece']:.3f}, mean top-1 probability {before['mean_top1_prob']:.3f} -> "
                 f"{after['mean_top1_prob']:.3f}, top-1 {after['top1']:.3f}")
    return Calibration(logit_scale=round(fit.logit_scale, 4), fitted_on=fitted_on), fit.report | {"fitted": True}


def has_references(pipeline) -> bool:
    """Whether the bundle's generator starts pictures from retrieved reference drawings."""
    return getattr(getattr(pipeline.generator, "pipeline", None), "references", None) is not None


@contextmanager
def references(pipeline, on: bool) -> Iterator[None]:
    """Generation with (``on``) or without the generator's retrieved reference drawings (a no-op without any)."""
    if not has_references(pipeline):
        yield
        return
    gen = pipeline.generator.pipeline
    before, gen.use_references = gen.use_references, on
    try:
        yield
    finally:
        gen.use_references = before


def head_targets(model, world, caption_weight: float) -> torch.Tensor:
    """Each concept's point the audio head is trained to reach (in the order of ``world.names``): the mean
    embedding of the pictures its manifest rows pair with, moved ``caption_weight`` toward its caption, as the
    trainer's frozen targets are (``train.toward_text``)."""
    from ...train import toward_text

    pictures = {}
    for r in world.rows:
        pictures.setdefault(r.label, r.images)
    points = []
    for c in world.concepts:
        paths = pictures.get(c.name) or [p.path for p in world.pictures if p.label == c.name and p.split == "fit"][:8]
        points.append(F.normalize(model.embed_image(paths).mean(0), dim=-1))
    return toward_text(model, torch.stack(points), [c.caption for c in world.concepts], caption_weight)


def evaluate_bundle(bundle, world, *, seed: int = 0, judge_steps: int = 1500, judge_size: int = 64,
                    caption_weight: float = 0.5, per_concept: int = 2, progress: bool = False) -> dict[str, Any]:
    """Every figure of the bundle's report, on the world's test split (held-out sources and never-heard
    concepts), through the bundle's own pipeline: what the demo would answer for each clip.

    Generation is judged from the held-out sounds and, ``per_concept`` pictures each, from the point the audio head
    aims each concept's sounds at (what a perfect audio encoder would hand the generator), each with and without
    the generator's retrieved reference drawings when it has them."""
    from ...pipeline import WavBriVLPipeline

    pipeline = WavBriVLPipeline.from_pretrained(bundle, device="cpu")
    names = world.names
    label_of = bundle_labels(pipeline.card.labels, world)
    class_labels = [label_of[n] for n in names]  # in the order of names: index i is concept names[i]
    test = world.split("test")
    embedded = pipeline.model.embed_audio_many([r.audio for r in test], batch_size=64, progress=progress)
    rows = [test[i] for i in embedded.indices]
    audio = embedded.embeddings
    gallery_labels = [m["caption"] for m in pipeline.index.meta if m["kind"] == "image"]
    top5 = pipeline.index.search(audio, 5, kind="image")
    classifier = pipeline.zero_shot_classifier(class_labels)
    probs = classifier.probabilities(audio)
    judge = world_judge(world, size=judge_size, steps=judge_steps, seed=seed, progress=progress)
    report: dict[str, Any] = {
        "concepts": {"heard": sum(c.heard for c in world.concepts), "never_heard": sum(not c.heard for c in world.concepts)},
        "skipped": [str(e) for _, e in embedded.errors],
        "gallery": {"pictures": len(gallery_labels), "concepts": len(set(gallery_labels))},
        "calibration": {"test": calibration_report(pipeline, audio, [label_of[r.label] for r in rows],
                                                   class_labels=class_labels)},
        "judge_on_held_out_drawings": judge_on_held_out_drawings(judge, world),
        "clips": [],
    }
    n = len(names)
    chance = {"top1": 1 / n, "top5": 5 / n}
    retrieves = has_references(pipeline)
    targets = head_targets(pipeline.model, world, caption_weight)
    target_labels = [c for c in names for _ in range(per_concept)]
    report["generation_from_targets"] = {}
    for mode, on in (("retrieval", True), ("no_retrieval", False)) if retrieves else (("plain", True),):
        with references(pipeline, on):
            _, judged, _ = generate_and_judge(pipeline, targets.repeat_interleave(per_concept, 0), target_labels, names,
                                              judge, class_labels, seed=seed)
        report["generation_from_targets"][mode] = averaged(judged, target_labels, chance)
    for group, want in (("heard", True), ("never_heard", False)):
        pick = [i for i, r in enumerate(rows) if world.concept(r.label).heard == want]
        if not pick:
            continue
        labels = [rows[i].label for i in pick]
        pixels, judged, tower = generate_and_judge(pipeline, audio[pick], labels, names, judge, class_labels, seed=seed)
        retrieval = retrieval_hits([top5[i] for i in pick], labels)
        report[group] = {
            "audio_to_picture": averaged(retrieval, labels, gallery_chance(labels, gallery_labels)),
            "zeroshot": averaged(zero_shot_hits(classifier, audio[pick], [label_of[x] for x in labels]), labels, chance),
            "generation_judge": averaged({"top5": judged["top5"], "top1": judged["top1"]}, labels, chance),
            "generation_frozen_tower": averaged(tower, labels, chance),
        }
        if retrieves:
            with references(pipeline, False):
                _, plain, _ = generate_and_judge(pipeline, audio[pick], labels, names, judge, class_labels, seed=seed)
            report[group]["generation_judge_no_retrieval"] = averaged(plain, labels, chance)
        report.setdefault("_generated", []).extend(zip(labels, pixels))
    labels_all = np.array([r.label for r in rows])
    centre = {c: F.normalize(audio[torch.from_numpy(labels_all == c)].mean(0), dim=0) for c in set(labels_all)}
    for i, r in enumerate(rows):
        order = torch.argsort(probs[i], descending=True)[:3].tolist()
        report["clips"].append({
            "audio": str(r.audio.relative_to(world.root)), "label": r.label, "heard": world.concept(r.label).heard,
            "source": r.meta.get("source", ""), "top3": [[names[j], round(float(probs[i, j]), 4)] for j in order],
            "nearest_picture": top5[i][0].caption if top5[i] else "",
            # how typical of its concept's held-out clips this one is (cosine to their mean): how examples are chosen
            "typicality": round(float(audio[i] @ centre[r.label]), 4), "seconds": round(_seconds(r.audio), 2),
        })
    return report


def _seconds(path) -> float:
    import soundfile as sf

    return float(sf.info(str(path)).duration)


def gallery_chance(labels: Sequence[str], gallery_labels: Sequence[str]) -> dict[str, float]:
    """The chance of a hit at k for a random ranking of the gallery: k pictures drawn at random include one of the
    concept's, averaged over concepts (as the figures are)."""
    gl = np.asarray(gallery_labels)
    out = {}
    for k in (1, 5):
        k_ = min(k, len(gl))
        per = {q: 1 - math.comb(len(gl) - int((gl == q).sum()), k_) / math.comb(len(gl), k_) for q in set(labels)}
        out[f"R@{k}"] = float(np.mean(list(per.values())))
    return out
