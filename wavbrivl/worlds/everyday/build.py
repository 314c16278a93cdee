"""Build the everyday bundle (``assets/everyday``) from a prepared world of real recordings and drawings.

``wavbrivl world everyday build --world CACHE/world --out assets/everyday`` runs, on a CPU:

1. the frozen backbone: all-MiniLM-L6-v2 as the locked text tower, an image tower trained on the drawings'
   captions (:mod:`.backbone`), then frozen;
2. the audio encoder: aisfx (a CNN pretrained on sound-effects libraries) distilled into a small fast student on
   every recording the encoder may hear plus an unlabelled corpus (:mod:`wavbrivl.distill`), then the student's
   projection head trained into the frozen space with the project's trainer (:mod:`wavbrivl.train`:
   MoCo queue, cached frozen targets half-way to the concept's words, every concept drawn equally often,
   ``align_weight``, crop/gain/speed/noise/mixing augmentation);
3. the generator: an :class:`~wavbrivl.embedding_to_image.EmbeddingToImagePipeline` trained on the drawings
   (framed on white, centred) conditioned on the points the head aims sounds at: each drawing's image embedding
   moved toward its concept's words by ``caption_weight``, jittered;
4. the gallery index of held-out drawings and every concept's captions, example sounds (held-out recordings),
   the card (its zero-shot labels are the concepts' captions, "a dog barking"; its logit scale is fitted on the
   validation split, :func:`.evaluate.calibrate_bundle`), the data card and licences, and the evaluation
   (:mod:`.evaluate`) in ``report.json``.

Only the audio encoder is held to the split: recordings of its test sources and of never-heard concepts reach
no step of its training (nor the distillation). Why each setting has its value: docs/EXPERIMENTS.md.
"""
from __future__ import annotations

import csv
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ...audio import FrontEndConfig
from ...backbone import BackboneConfig, save_open_clip_folder, weights_digest
from ...embedding_to_image import EmbeddingToImageTrainConfig
from ...encoder import EncoderConfig
from ...model import WavBriVL, WavBriVLConfig
from ...pairs import PAIRS_DIR, write_pairs
from ...timing import timed
from ..folders import BuildFolders
from .backbone import CAPTION_TEMPLATES, PHRASE_TEMPLATES, TEXT_PACKAGE, TEXT_REF, ImageTowerSettings, model_config
from .world import EverydayWorld, load_pictures, load_recordings

if TYPE_CHECKING:
    from ...distill import DistillResult
    from ...train import TrainConfig

log = logging.getLogger(__name__)
AISFX_WHEEL = "aisfx-0.1.2-py2.py3-none-any.whl"


@dataclass
class EverydaySettings:
    """The everyday world's recipe (chosen by measurement: docs/EXPERIMENTS.md)."""

    seed: int = 0
    text_ref: str = TEXT_REF
    text_package: str = TEXT_PACKAGE
    embed_dim: int = 384  # the text tower's sentence-embedding size: the shared space has no projection
    # The image tower: a small ModifiedResNet at 64 px learning the captions' MiniLM embeddings.
    picture_size: int = 64
    tower_width: int = 16
    tower: ImageTowerSettings = field(default_factory=lambda: ImageTowerSettings(steps=1500))
    # The student: this project's ResNet trunk on 64 mel bands at 22.05 kHz, windows as long as aisfx's blocks.
    student_rate: int = 22050
    student_channels: list[int] = field(default_factory=lambda: [32, 64, 128, 256])
    head_hidden: list[int] = field(default_factory=lambda: [512])
    # Why 1500 steps on 8000 crops: docs/EXPERIMENTS.md (the second build, "the distillation").
    distill_steps: int = 1500
    distill_batch: int = 64
    distill_max_crops: int = 8000
    head_steps: int = 400
    head_batch: int = 64
    align_weight: float = 0.3
    # Half-way between the drawings' embeddings and the concept's words (MiniLM, the strong half of the space),
    # every concept drawn equally often (the concepts' numbers of takes differ widely): docs/EXPERIMENTS.md.
    caption_weight: float = 0.5
    balance_labels: float = 1.0
    # The generator predicts the clean picture at 64 px in 4x4 patches (the UNet runs on a 16x16 grid, as cheap as
    # the second build's 32 px in 2x2), and starts each picture from the training drawing nearest its condition
    # (retrieval, EmbeddingToImagePipeline.set_references) noised to ``retrieval_strength`` of the schedule: a
    # small generator then repaints a real drawing instead of inventing one. Why: docs/EXPERIMENTS.md.
    generator: EmbeddingToImageTrainConfig = field(default_factory=lambda: EmbeddingToImageTrainConfig(
        steps=1000, batch_size=64, lr=1e-3, sample_size=64, patch_size=4, channels=(64, 128, 128), ema_decay=0.999,
        prediction_type="sample", guidance_scale=1.5, cond_noise=1.0, progress=False))
    retrieval_strength: float = 0.6
    generator_steps: int = 25
    judge_steps: int = 1500
    # The judge reads pictures at the generator's size; it is trained on the real drawings only.
    judge_size: int = 64
    judge_per_concept: int = 2  # pictures painted from each concept's target point in the report
    examples: int = 12
    # The training pairs the bundle carries (pairs/, for `wavbrivl retarget`) within 20 MB: the world's 128-px
    # drawings in a 256-colour palette, each clip's first 10 s (the head trains on shorter crops) in Opus at 24 kHz
    # (the Opus rate nearest the trunk's 22.05 kHz), smaller than Vorbis at the same fidelity (docs/EXPERIMENTS.md).
    pairs_image_size: int = 128
    pairs_image_colours: int = 256
    pairs_codec: str = "opus"
    pairs_compression: float = 0.93
    pairs_seconds: float = 10.0

    @classmethod
    def reduced(cls) -> "EverydaySettings":
        """A CI-sized build: the same code path on a fraction of the steps."""
        return cls(tower=ImageTowerSettings(steps=30, batch_size=16), student_channels=[8, 16], head_hidden=[],
                   distill_steps=20, distill_batch=8, distill_max_crops=64, head_steps=20, head_batch=8,
                   generator=EmbeddingToImageTrainConfig(steps=20, batch_size=8, sample_size=32, patch_size=2,
                                                         channels=(16, 32), prediction_type="sample",
                                                         guidance_scale=1.5, cond_noise=1.0, progress=False),
                   generator_steps=3, judge_steps=20, judge_size=32, judge_per_concept=1, examples=3)


def student_config(backbone_dir: Path, backbone_id: str, s: EverydaySettings, embed_dim: int) -> WavBriVLConfig:
    """The fast encoder the bundle ships: windows of aisfx's block length, so it sees what its teacher saw."""
    teacher = FrontEndConfig.aisfx()
    return WavBriVLConfig(
        backbone=BackboneConfig(f"local-dir:{backbone_dir}", None, id=backbone_id),
        frontend=FrontEndConfig(sample_rate=s.student_rate, n_fft=1024, win_length=1024, hop_length=s.student_rate // 100,
                                n_mels=64, f_min=40.0, f_max=s.student_rate / 2, window_seconds=teacher.window_seconds,
                                hop_seconds=teacher.hop_seconds, max_seconds=3 * 3600.0),
        encoder=EncoderConfig(stem_channels=s.student_channels[0], channels=list(s.student_channels),
                              blocks=[1] * len(s.student_channels), head_hidden=list(s.head_hidden), embed_dim=embed_dim),
        embed_dim=embed_dim, preset="everyday", info={"bundle": "wavbrivl everyday world"})


def head_config(s: EverydaySettings, manifest: str | Path, out: str | Path, init: str | Path, cache_dir: str | Path,
                seed: int | None = None) -> TrainConfig:
    """The build's recipe for the audio head (the student's trunk frozen), on any manifest: the build uses the
    world's, ``benchmarks/sources.py`` the same world with more sources."""
    from ...train import TrainConfig

    return TrainConfig(
        manifest=str(manifest), out=str(out), init=str(init), train_head_only=True,
        max_steps=s.head_steps, batch_size=s.head_batch, lr=2e-3, warmup_steps=min(50, s.head_steps // 5),
        queue_size=4096, val_every=max(25, s.head_steps // 4), checkpoint_every=10**9,
        seed=s.seed if seed is None else seed, progress=False,
        align_weight=s.align_weight, caption_weight=s.caption_weight, balance_labels=s.balance_labels,
        mask_same_label=True, speed=0.05, noise_snr_db=[15.0, 40.0], mix_prob=0.25,
        mix_db=[-20.0, -8.0], cache_dir=str(cache_dir))


def teacher_model(backbone: BackboneConfig, embed_dim: int, wheel: Path) -> WavBriVL:
    """aisfx with its published weights (the trunk the student learns from; its head is not used)."""
    from ... import aisfx

    model = WavBriVL(WavBriVLConfig(backbone, FrontEndConfig.aisfx(), EncoderConfig.aisfx(embed_dim), embed_dim=embed_dim))
    aisfx.load_into(model.audio_encoder, wheel)
    return model.eval()


def build_everyday(world_dir: str | Path, out: str | Path, *, cache: str | Path | None = None,
                   settings: EverydaySettings | None = None, work: str | Path | None = None) -> dict[str, Any]:
    """Build the bundle into ``out`` from the world prepared in ``world_dir``; returns the evaluation report.

    ``cache`` holds ``wheels/`` (the aisfx wheel, fetched with the world); default: the world's parent folder.
    """
    from ...train import train

    s = settings or EverydaySettings()
    world = EverydayWorld.load(world_dir)
    wheel = (Path(cache) if cache else Path(world_dir).parent) / "wheels" / AISFX_WHEEL
    if not wheel.is_file():
        raise FileNotFoundError(f"{wheel}: the aisfx wheel is missing; run `wavbrivl world everyday fetch` first")
    folders = BuildFolders.prepare(out, work)
    timings: dict[str, float] = {}
    with timed(timings, "total_s"):
        with timed(timings, "backbone_s"):
            backbone = train_backbone(world, s, folders.work)
        log.info("image tower trained on %d drawings in %.0f s", len(fit_pictures(world)), timings["backbone_s"])
        with timed(timings, "distill_s"):
            init_dir, distilled = distil_student(world, s, backbone, wheel, folders.work)
        log.info("aisfx distilled into the student (%d crops, held-out R² %.2f) in %.0f s", distilled.crops,
                 distilled.holdout_r2, timings["distill_s"])
        with timed(timings, "audio_head_s"):
            result = train(head_config(s, world.root / "manifest.csv", folders.work / "audio_run", init_dir,
                                       folders.work / "cache"))
            model = WavBriVL.from_pretrained(result.best_dir)
        log.info("audio head trained in %.0f s (validation %s)", timings["audio_head_s"], result.best_metrics)
        with timed(timings, "generator_s"):
            pipe, gen_losses = train_generator(world, s, model)
        log.info("generator trained in %.0f s", timings["generator_s"])
        with timed(timings, "assemble_s"):
            assemble(world, s, folders, model, pipe)
        with timed(timings, "evaluate_s"):
            report = evaluate_and_present(folders.staging, world, s)
    report["build"] = {
        "settings": asdict(s), "timings": timings, "backbone_id": backbone.config.id,
        "image_tower_final_loss": backbone.final_loss,
        "distillation": {"crops": distilled.crops, "holdout_cosine": distilled.holdout_cosine,
                         "holdout_r2": distilled.holdout_r2,
                         "final_loss": float(np.mean(distilled.losses[-20:] or [float("nan")])),
                         "teacher_s": distilled.teacher_seconds, "student_s": distilled.student_seconds},
        "audio_val": result.best_metrics, "skipped_rows": len(result.skipped),
        "heard_sources": sorted({r.meta.get("source", "") for r in heard_rows(world)}),
        "generator_final_loss": float(np.mean(gen_losses[-50:])),
    }
    from .report import write_report

    write_report(report, folders.staging)
    folders.swap_in()
    return report


@dataclass(frozen=True)
class TrainedBackbone:
    """The frozen backbone step 1 leaves in the scratch folder, for every later step to load."""

    config: BackboneConfig
    folder: Path
    embed_dim: int
    final_loss: float  # the image tower's, over its last steps


def fit_pictures(world: EverydayWorld) -> list:
    """The drawings the towers and the generator train on (the gallery's are held out)."""
    return [p for p in world.pictures if p.split == "fit"]


def heard_rows(world: EverydayWorld) -> list:
    """The recordings the audio encoder may hear: the train and validation splits, never the test sources."""
    return [r for r in world.rows if r.split in ("train", "val")]


def train_backbone(world: EverydayWorld, s: EverydaySettings, work: Path) -> TrainedBackbone:
    """Step 1: an image tower trained on the drawings' captions against the locked text tower, saved frozen."""
    from .backbone import train_image_tower

    fit = fit_pictures(world)
    cfg = model_config(s.text_ref, embed_dim=s.embed_dim, image_size=s.picture_size, width=s.tower_width)
    tower, losses = train_image_tower(load_pictures([p.path for p in fit], 2 * s.picture_size), [p.label for p in fit],
                                      concept_captions(world), cfg, s.tower, s.text_package)
    folder = save_open_clip_folder(tower, cfg, work / "backbone", text_package=s.text_package)
    config = BackboneConfig(f"local-dir:{folder}", None, id=f"wavbrivl-everyday-minilm/{weights_digest(folder)}")
    return TrainedBackbone(config, folder, int(cfg["embed_dim"]), float(np.mean(losses[-20:])))


def distil_student(world: EverydayWorld, s: EverydaySettings, backbone: TrainedBackbone, wheel: Path,
                   work: Path) -> tuple[Path, DistillResult]:
    """Step 2a: aisfx distilled into the student's trunk on what the encoder may hear (and the unlabelled
    corpus); returns the saved student, the head's starting point."""
    from ...distill import DistillConfig, distill_trunk

    waves = load_recordings([r.audio for r in heard_rows(world)] + world.corpus)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.seed)
        student = WavBriVL(student_config(backbone.folder, backbone.config.id, s, backbone.embed_dim))
    distilled = distill_trunk(teacher_model(backbone.config, backbone.embed_dim, wheel), student, waves, DistillConfig(
        steps=s.distill_steps, batch_size=s.distill_batch, max_crops=s.distill_max_crops, seed=s.seed, progress=False))
    return student.save_pretrained(work / "student"), distilled


def train_generator(world: EverydayWorld, s: EverydaySettings, model: WavBriVL) -> tuple[Any, list[float]]:
    """Step 3: the generator, on the drawings framed as the gallery shows them, conditioned where sounds are
    aimed, starting each picture from its nearest training drawing."""
    from ...embedding_to_image import train_embedding_to_image

    fit = fit_pictures(world)
    fit_pixels = load_pictures([p.path for p in fit], s.generator.sample_size)
    fit_images = [_pil(x) for x in fit_pixels]
    fit_captions = [world.concept(p.label).caption for p in fit]  # the texts the head's targets moved toward
    conditions = generator_conditions(model, fit_images, fit_captions, s.caption_weight)
    pipe, losses = train_embedding_to_image(fit_images, conditions, s.generator)
    pipe.set_references(fit_pixels, conditions, strength=s.retrieval_strength)
    return pipe, losses


def assemble(world: EverydayWorld, s: EverydaySettings, folders: BuildFolders, model: WavBriVL, pipe: Any) -> None:
    """Step 4a: models, gallery, data card and training pairs into the staging folder."""
    folders.save_models(model, pipe, {"bundle": "wavbrivl everyday world", "seed": s.seed})
    _assemble_gallery(world, folders.staging, model)
    _copy_data_card(world, folders.staging)
    # The head's pairs and its recipe as data (only run options dropped): the one copy of the recipe stays head_config.
    write_pairs(world.rows, folders.staging / PAIRS_DIR, s.student_rate, s.pairs_image_size, codec=s.pairs_codec,
                compression_level=s.pairs_compression, image_colours=s.pairs_image_colours, max_seconds=s.pairs_seconds,
                train_recipe=head_config(s, "", "", "", "").recipe())


def evaluate_and_present(staging: Path, world: EverydayWorld, s: EverydaySettings) -> dict[str, Any]:
    """Step 4b: the card, its calibration, the evaluation, and the example sounds chosen from it."""
    from .evaluate import calibrate_bundle, evaluate_bundle
    from .report import choose_examples, write_card, write_example_sheet

    write_card(staging, world, [], s)  # labels and templates first: calibration and evaluation classify as the demo will
    calibration, fitted = calibrate_bundle(staging, world)  # the zero-shot scale, fitted on the validation split
    write_card(staging, world, [], s, calibration)
    report = evaluate_bundle(staging, world, seed=s.seed, judge_steps=s.judge_steps, judge_size=s.judge_size,
                             caption_weight=s.caption_weight, per_concept=s.judge_per_concept)
    report["calibration"]["validation"] = fitted
    examples = choose_examples(world, report, s.examples)
    write_card(staging, world, examples, s, calibration)
    write_example_sheet(staging, world, examples)
    return report


def generator_conditions(model: WavBriVL, images: list, labels: list[str], caption_weight: float) -> torch.Tensor:
    """Each drawing's condition: its image embedding moved toward its concept's caption as far as the audio head's
    targets were (``caption_weight``), so that the generator learns on the very points sounds are trained to reach."""
    from ...train import toward_text

    return toward_text(model, model.embed_image(images), labels, caption_weight)


def concept_captions(world: EverydayWorld) -> dict[str, list[str]]:
    """Every text true of a concept's pictures: its name and aliases in the caption templates, its caption in the
    phrase templates (the card's prompts), and its drawings' own titles."""
    out: dict[str, list[str]] = {}
    for c in world.concepts:
        texts = [t.format(a) for a in dict.fromkeys([c.name, *c.aliases]) for t in CAPTION_TEMPLATES]
        texts += [t.format(c.caption) for t in PHRASE_TEMPLATES]
        texts += [cap for p in world.pictures if p.label == c.name for cap in p.captions]
        out[c.name] = list(dict.fromkeys(texts))
    return out


def _pil(x: torch.Tensor):
    from PIL import Image

    return Image.fromarray(x.permute(1, 2, 0).numpy())


def _assemble_gallery(world: EverydayWorld, staging: Path, model: WavBriVL) -> None:
    """The held-out drawings (copied in, captioned by their concept) and each concept's caption ("a dog barking"),
    indexed by the frozen towers."""
    from ...index import GalleryIndex

    gallery = [p for p in world.pictures if p.split == "gallery"]
    folder = staging / "gallery"
    folder.mkdir(parents=True)
    with open(folder / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption", "label", "licence", "package"])
        for p in gallery:
            name = f"{p.label.replace(' ', '_')}__{p.path.name}"
            shutil.copyfile(p.path, folder / name)
            w.writerow([name, p.label, p.label, p.meta.get("licence", ""), p.meta.get("package", "")])
    (folder / "captions.txt").write_text("\n".join(world.captions) + "\n", encoding="utf-8")
    GalleryIndex.build(model, staging / "index", images=folder / "manifest.csv", captions=folder / "captions.txt",
                       dtype="float16", progress=False)


def _copy_data_card(world: EverydayWorld, staging: Path) -> None:
    for name in ("DATA.md", "data_card.json"):
        if (world.root / name).is_file():
            shutil.copyfile(world.root / name, staging / name)
    if (world.root / "LICENSES").is_dir():
        shutil.copytree(world.root / "LICENSES", staging / "LICENSES")
