"""Build the shapes bundle (``assets/shapes``): a small world this project generates, trains and evaluates.

``wavbrivl world shapes build --out assets/shapes`` runs, from a seed, on a CPU:

1. the procedural world (:mod:`.world`): pictures, captions, sounds; three colour x shape pairs never reach
   the audio encoder's training (they measure generalisation);
2. the frozen backbone: a small open_clip model CLIP-trained on the world's pictures and captions
   (:mod:`.backbone`), then frozen;
3. the audio encoder, trained against that frozen image tower with the project's own trainer
   (:mod:`wavbrivl.train`: MoCo queue, cached embeddings), exactly as a real run;
4. the generator: an :class:`~wavbrivl.embedding_to_image.EmbeddingToImagePipeline` trained on the world's
   pictures (posed canonically) conditioned on their frozen image embeddings;
5. a gallery index of the held-out test pictures and all canonical captions, example sounds, the bundle card
   (``bundle.json``), and ``report.json`` / ``report.md`` with the bundle's evaluation (:mod:`.evaluate`).

Why each setting has its value is measured in docs/EXPERIMENTS.md.
"""
from __future__ import annotations

import csv
import json
import logging
import shutil
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ...audio import FrontEndConfig
from ...backbone import BackboneConfig, weights_digest
from ...bundle import BundleCard, BundlePart, ExampleSound, GeneratorSettings, current_bundle_path
from ...embedding_to_image import EmbeddingToImageTrainConfig
from ...encoder import EncoderConfig
from ...model import WavBriVL, WavBriVLConfig
from ...timing import timed
from ..folders import BuildFolders
from .world import ATTRIBUTES, DEFAULT_HOLDOUT, all_combinations, caption_for, make_item, render_image, world_items

if TYPE_CHECKING:
    from ...train import TrainConfig, TrainResult

log = logging.getLogger(__name__)
BUNDLE_INFO = "wavbrivl offline shapes world"
#: This module's names from before the shapes world had one name everywhere -> today's; the old ones still import,
#: with a FutureWarning, for one release.
RENAMED = {"StarterSettings": "ShapesSettings", "build_starter": "build_shapes", "starter_model_config": "shapes_model_config"}


@dataclass
class ShapesSettings:
    """The shapes world's recipe. The values were chosen by measurement: see docs/EXPERIMENTS.md."""

    seed: int = 0
    n_per_combo: int = 60
    backbone_steps: int = 1500
    audio_steps: int = 2500
    generator_steps: int = 1500
    audio_batch: int = 64
    audio_lr: float = 3e-3
    audio_time_mask_width: int = 20
    audio_freq_mask_width: int = 6
    generator_batch: int = 64
    generator_lr: float = 1e-3
    # A UNet twice as wide on 2x2-patched pictures costs less per step than a narrow one at full resolution.
    generator_channels: tuple[int, ...] = (64, 128, 128)
    generator_patch: int = 2
    generator_ema: float | None = 0.999
    generator_snr_gamma: float | None = None
    generator_prediction: str = "v_prediction"
    generator_guidance: float = 1.5
    # Targets drawn centred and upright: a sound carries no rotation or position for the generator to follow.
    generator_canonical: bool = True
    # Conditions jittered in training, because a sound lands near its pictures' embeddings, not on them.
    generator_cond_noise: float = 1.0
    # Pulls sounds onto their pictures' embeddings, where the generator (trained on pictures) can read them.
    audio_align_weight: float = 0.3
    examples: int = 8
    eval_generations: int = 240  # enough sounds that the consistency figure moves by about +-0.03 between seeds

    @classmethod
    def reduced(cls) -> "ShapesSettings":
        """A CI-sized build: same code path, a fraction of the data and steps."""
        return cls(n_per_combo=14, backbone_steps=250, audio_steps=150, generator_steps=150, audio_batch=32,
                   generator_batch=32, generator_channels=(32, 64, 64), generator_ema=0.99, examples=3,
                   eval_generations=12)

    def audio_config(self, manifest: str | Path, out: str | Path, init: str | Path) -> TrainConfig:
        """The audio encoder's training run (every checkpoint but the last skipped: the build keeps the last)."""
        from ...train import TrainConfig

        return TrainConfig(
            manifest=str(manifest), out=str(out), init=str(init), max_steps=self.audio_steps,
            batch_size=self.audio_batch, lr=self.audio_lr, warmup_steps=50, queue_size=4096,
            val_every=max(50, self.audio_steps // 4), checkpoint_every=10**9, seed=self.seed, progress=False,
            time_mask_width=self.audio_time_mask_width, freq_mask_width=self.audio_freq_mask_width,
            align_weight=self.audio_align_weight,
        )

    def generator_config(self) -> EmbeddingToImageTrainConfig:
        return EmbeddingToImageTrainConfig(
            steps=self.generator_steps, batch_size=self.generator_batch, lr=self.generator_lr, seed=self.seed,
            channels=tuple(self.generator_channels), patch_size=self.generator_patch, ema_decay=self.generator_ema,
            snr_gamma=self.generator_snr_gamma, prediction_type=self.generator_prediction,
            guidance_scale=self.generator_guidance, cond_noise=self.generator_cond_noise, progress=False,
        )


def shapes_model_config(backbone_dir: Path, backbone_id: str) -> WavBriVLConfig:
    """A small two-stream encoder on 48 mel bands with 3-second windows (the world's sounds are 3 s long).

    The frozen space is additive in the attributes (a held-out pair's pictures sit where its colour's and its
    shape's pictures meet). The two-stream encoder keeps that form for sounds: its spectral stream hears pitch
    (colour), its temporal stream rhythm and length (shape, size), and one linear head adds them, so an unheard
    pitch x rhythm pair lands where its parts point. A 64 ms window resolves the lowest register's glide,
    which a 25 ms window smears into a steady hum.
    """
    return WavBriVLConfig(
        backbone=BackboneConfig(f"local-dir:{backbone_dir}", None, id=backbone_id),
        frontend=FrontEndConfig(n_mels=48, n_fft=1024, win_length=1024, hop_length=320, f_max=4000.0,
                                window_seconds=3.0, hop_seconds=1.5, max_seconds=600.0),
        encoder=EncoderConfig(arch="twostream", stem_channels=16, channels=[32, 64, 128], head_hidden=[], embed_dim=64,
                              contour_channels=16),
        embed_dim=64,
        preset="shapes",
        info={"bundle": BUNDLE_INFO},
    )


def build_shapes(out: str | Path, settings: ShapesSettings | None = None, work: str | Path | None = None) -> dict[str, Any]:
    """Build the whole bundle into ``out``; returns the evaluation report. The steps run in this order, each
    from the world's seed, so a build is the same on every run."""
    from ...data import read_manifest
    from ...pipeline import WavBriVLPipeline
    from .evaluate import evaluate_bundle, write_report
    from .world import write_world

    s = settings or ShapesSettings()
    folders = BuildFolders.prepare(out, work)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    with timed(timings, "world_s"):
        manifest = write_world(folders.work / "world", n_per_combo=s.n_per_combo, seed=s.seed)
        rows = read_manifest(manifest)
    with timed(timings, "backbone_s"):
        pics, attrs = picture_set(rows, s.n_per_combo, s.seed)
        backbone_dir, backbone_id, clip_losses = _frozen_backbone(pics, attrs, s, folders.work)
    with timed(timings, "audio_encoder_s"):
        result = _trained_audio_encoder(manifest, backbone_dir, backbone_id, s, folders.work)
    with timed(timings, "generator_s"):
        # The last checkpoint, not the best on validation: validation holds seen pairs only, and selecting on it
        # picks early checkpoints that generalise worse to never-heard pairs.
        model = WavBriVL.from_pretrained(result.last_dir)
        pipe, gen_losses = _trained_generator(model, rows, pics, s)
    with timed(timings, "assemble_s"):
        test_rows, gallery = _assemble(folders, model, pipe, rows, s)
    with timed(timings, "evaluate_s"):
        pipeline = WavBriVLPipeline.from_pretrained(folders.staging, device="cpu")
        report = evaluate_bundle(pipeline, test_rows, gallery, [r.label for r in test_rows],
                                 n_generations=s.eval_generations, seed=s.seed)
    timings["total_s"] = time.perf_counter() - t0
    report["build"] = {"settings": asdict(s), "timings": timings, "backbone_id": backbone_id,
                       "backbone_final_loss": float(np.mean(clip_losses[-20:])),
                       "audio_val": result.best_metrics, "generator_final_loss": float(np.mean(gen_losses[-50:])),
                       "skipped_rows": len(result.skipped)}
    write_report(report, folders.staging)
    folders.swap_in()
    return report


def _frozen_backbone(pics: list, attrs: list[dict[str, str]], s: ShapesSettings, work: Path
                     ) -> tuple[Path, str, list[float]]:
    """The backbone CLIP-trained on the world's pictures and saved: its folder, its id (named by its weights) and
    its training losses."""
    from .backbone import MODEL_NAME, save_backbone, train_backbone

    clip_model, clip_losses = train_backbone(pics, attrs, steps=s.backbone_steps, seed=s.seed)
    backbone_dir = save_backbone(clip_model, work / "backbone")
    return backbone_dir, f"{MODEL_NAME}/{weights_digest(backbone_dir)}", clip_losses


def _trained_audio_encoder(manifest: Path, backbone_dir: Path, backbone_id: str, s: ShapesSettings, work: Path
                           ) -> TrainResult:
    """The audio encoder, seeded, trained into the frozen space by the project's trainer."""
    from ...train import train

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.seed)
        model = WavBriVL(shapes_model_config(backbone_dir, backbone_id))
    init_dir = model.save_pretrained(work / "init")
    return train(s.audio_config(manifest, work / "audio_run", init_dir))


def _trained_generator(model: WavBriVL, rows: list, pics: list, s: ShapesSettings) -> tuple[Any, list[float]]:
    """The generator learns from the backbone's pictures (held-out pairs included: only the audio encoder must not
    have heard a pair), conditioned on their embeddings, drawing each scene in the canonical pose."""
    from ...embedding_to_image import train_embedding_to_image

    gen_images = picture_set(rows, s.n_per_combo, s.seed, canonical=True)[0] if s.generator_canonical else pics
    return train_embedding_to_image(gen_images, model.embed_image(pics), s.generator_config())


def _assemble(folders: BuildFolders, model: WavBriVL, pipe: Any, rows: list, s: ShapesSettings) -> tuple[list, list[Path]]:
    """The models, the gallery of test pictures with its index, the example sounds and the card, in the staging
    folder (swapped in only once the bundle is whole); returns the test rows and their gallery pictures."""
    from ...index import GalleryIndex

    staging = folders.staging
    folders.save_models(model, pipe, {"bundle": BUNDLE_INFO, "seed": s.seed})
    test_rows = [r for r in rows if r.split == "test"]
    gallery = _write_gallery(test_rows, staging / "gallery")
    GalleryIndex.build(WavBriVL.from_pretrained(staging), staging / "index", images=staging / "gallery" / "manifest.csv",
                       captions=staging / "gallery" / "captions.txt", dtype="float32", progress=False)
    (staging / "examples").mkdir()
    for r in _example_rows(test_rows, s.examples):
        shutil.copy(r.audio, staging / "examples" / f"{r.meta['size']}_{r.meta['colour']}_{r.meta['shape']}.wav")
    bundle_card(staging).save(staging)
    return test_rows, gallery


def _write_gallery(test_rows: list, folder: Path) -> list[Path]:
    """The test pictures copied in, every canonical caption, and a manifest with each picture's attributes."""
    folder.mkdir()
    gallery = []
    for r in test_rows:
        dst = folder / r.images[0].name
        shutil.copy(r.images[0], dst)
        gallery.append(dst)
    (folder / "captions.txt").write_text("\n".join(caption_for(*c) for c in all_combinations()) + "\n")
    with open(folder / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption", "colour", "shape", "size", "seen"])
        for r, path in zip(test_rows, gallery):
            w.writerow([path.name, r.caption, r.meta["colour"], r.meta["shape"], r.meta["size"], r.meta["seen"]])
    return gallery


DESCRIPTION = {
    "en": ("The offline shapes world: a small model trained on synthetic coloured shapes, so the demo works with no "
           "network. A sound's pitch is the colour (a low hum is red, then green, blue, and a high whistle is "
           "yellow), its pattern the shape (a steady tone is a circle, beeps a square, a rising glide a triangle) "
           "and its length the size (short is small, long is large). Red triangles, green squares and blue circles "
           "were never heard in training: they show the model placing what it has only seen."),
    "ja": ("ネットワークなしで動くオフラインの図形の世界です。合成した色付きの図形で学習した小さなモデルです。"
           "音の高さが色（低いうなりは赤、次に緑、青、高い口笛は黄）、音のパターンが形（一定の音は円、ビープの繰り返しは"
           "四角、上がっていく音は三角）、長さが大きさ（短いと小、長いと大）を表します。赤い三角・緑の四角・青い円の音は"
           "学習で一度も聞いていません。見たことしかないものをモデルがどこに置くかを示します。"),
}
NAME = {"en": "Shapes: the offline world", "ja": "図形の世界（オフライン）"}
JA_WORDS = {"small": "小さな", "large": "大きな", "red": "赤い", "green": "緑の", "blue": "青い", "yellow": "黄色い",
            "circle": "円", "square": "四角", "triangle": "三角"}


def bundle_card(folder: Path) -> BundleCard:
    """The card of a shapes bundle whose ``examples/`` hold ``{size}_{colour}_{shape}.wav`` files."""
    held = {tuple(h) for h in DEFAULT_HOLDOUT}
    examples = []
    for path in sorted((folder / "examples").glob("*.wav")):
        size, colour, shape = path.stem.split("_")
        label = caption_for(colour, shape, size)
        examples.append(ExampleSound(
            file=f"examples/{path.name}", label=label, heard=(colour, shape) not in held,
            title={"en": label, "ja": f"{JA_WORDS[size]}{JA_WORDS[colour]}{JA_WORDS[shape]}"}))
    mit = "MIT (wavbrivl project)"
    made = "Made by wavbrivl's `wavbrivl world shapes build` from a seed; no third-party data or weights."
    return BundleCard(
        name=NAME, description=DESCRIPTION,
        labels=[caption_for(c, s, z) for c, s, z in all_combinations()], templates=["{}"], examples=examples,
        parts=[BundlePart("audio encoder", mit, made, ["audio_encoder.safetensors"]),
               BundlePart("frozen backbone (image and text towers)", mit, made, ["backbone/"]),
               BundlePart("image generator", mit, made, ["generator/"]),
               BundlePart("gallery pictures, captions and example sounds (procedural)", mit, made,
                          ["gallery/", "index/", "examples/"])],
        generator=GeneratorSettings(steps=25),
    )


def picture_set(rows, n_per_combo: int, seed: int, canonical: bool = False) -> tuple[list, list[dict[str, str]]]:
    """The pictures the backbone and the generator learn from, with their attributes.

    Every picture except the test split's (the gallery must hold unseen pictures), first and in the rows'
    order, then pictures of the held-out pairs drawn afresh from other seeds: the picture models may know
    what a red triangle looks like; only the audio encoder must never have heard one. ``rows`` is the
    manifest of ``write_world(n_per_combo=n_per_combo, seed=seed)``.

    ``canonical`` redraws the same scenes in a fixed pose, the shape centred and upright (see
    :func:`.world.render_image`): the generator's targets. Position i of both sets is the same
    scene, so the generator learns "this embedding -> this scene, posed canonically".
    """
    from PIL import Image

    fit = [i for i, r in enumerate(rows) if r.split != "test"]
    if canonical:
        items = world_items(n_per_combo, seed)  # write_world's order: row i is item i
        if len(items) != len(rows):
            raise ValueError(f"{len(rows)} rows are not the world of n_per_combo={n_per_combo}, seed={seed} ({len(items)} items)")
        pics = [render_image(items[i], canonical=True) for i in fit]
    else:
        pics = [Image.open(rows[i].images[0]).convert("RGB") for i in fit]
    attrs = [{k: rows[i].meta[k] for k in ATTRIBUTES} for i in fit]
    rng = np.random.default_rng([seed, 99])
    for colour, shape in DEFAULT_HOLDOUT:
        for size in ATTRIBUTES["size"]:
            for _ in range(int(n_per_combo * 0.7)):
                pics.append(render_image(make_item(colour, shape, size, int(rng.integers(2**31))), canonical=canonical))
                attrs.append({"colour": colour, "shape": shape, "size": size})
    return pics, attrs


def write_bundle_world(bundle: str | Path, out: str | Path) -> Path:
    """Regenerate the world a bundle was built from (same seed and size, from its ``report.json``)."""
    from .world import write_world

    report_path = current_bundle_path(bundle) / "report.json"
    if not report_path.is_file():
        raise FileNotFoundError(f"{report_path}: not a shapes bundle (no report.json)")
    settings = json.loads(report_path.read_text())["build"]["settings"]
    return write_world(out, n_per_combo=settings["n_per_combo"], seed=settings["seed"])


def _example_rows(rows, n: int):
    """A spread of examples: unseen pairs first, then different seen combinations."""
    picked, seen_combos = [], set()
    for want_seen in ("False", "True"):
        for r in rows:
            combo = (r.meta["colour"], r.meta["shape"], r.meta["size"])
            if r.meta["seen"] == want_seen and combo not in seen_combos and len(picked) < n:
                picked.append(r)
                seen_combos.add(combo)
    return picked


def __getattr__(name: str) -> Any:
    """The old names in :data:`RENAMED`, with a warning naming the new one."""
    if name in RENAMED:
        warnings.warn(f"{__name__}.{name} is now {RENAMED[name]}; the old name goes in the next release",
                      FutureWarning, stacklevel=2)
        return globals()[RENAMED[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
