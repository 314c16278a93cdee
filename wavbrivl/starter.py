"""The offline starter bundle: a small world this project generates, trains and evaluates itself.

``wavbrivl starter build --out assets/starter`` runs, from a seed, on a CPU:

1. the procedural world (:mod:`wavbrivl.world`): pictures, captions, sounds; three colour x shape pairs
   never reach the audio encoder's training (they measure generalisation);
2. the frozen backbone: a small open_clip model CLIP-trained on the world's pictures and captions
   (:mod:`wavbrivl.starter_backbone`), then frozen;
3. the audio encoder, trained against that frozen image tower with the project's own trainer
   (:mod:`wavbrivl.train`: MoCo queue, cached embeddings) - exactly as a real run;
4. the generator: :class:`~wavbrivl.generate.EmbeddingToImagePipeline` trained on the world's pictures
   conditioned on their frozen image embeddings;
5. a gallery index of the held-out test pictures and all canonical captions, example sounds, and
   ``report.json`` / ``report.md`` with the bundle's evaluation (:func:`evaluate_bundle`).

In this world a sound fixes a picture's colour, shape and size but not its background or position, so an
audio->image hit is any gallery picture with the sound's three attributes (chance = that fraction of the
gallery, reported beside each figure); exact-pair recall is reported too.
"""
from __future__ import annotations

import csv
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .audio import FrontEndConfig
from .backbone import BackboneConfig
from .encoder import EncoderConfig
from .model import WavBriVL, WavBriVLConfig
from .world import ATTRIBUTES, DEFAULT_HOLDOUT, all_combinations, caption_for, make_item, render_image, world_items

log = logging.getLogger(__name__)


@dataclass
class StarterSettings:
    seed: int = 0
    n_per_combo: int = 60
    backbone_steps: int = 1500
    audio_steps: int = 2500
    generator_steps: int = 1500
    audio_batch: int = 64
    generator_batch: int = 64
    generator_lr: float = 1e-3
    # A UNet twice as wide on 2x2-patched pictures costs less per step than the narrow full-resolution one;
    # weight averaging sharpens its shapes. Min-SNR weighting is available but off: it cost colour and size
    # (picture-conditioned consistency 0.41 against 0.50; see README: the starter bundle).
    generator_channels: tuple[int, ...] = (64, 128, 128)
    generator_patch: int = 2
    generator_ema: float | None = 0.999
    generator_snr_gamma: float | None = None
    # Velocity prediction: picture-conditioned consistency 0.59 against 0.53 for clean-picture prediction.
    # Guidance 1.5: from sounds 0.81 against 0.76 at 1 and 0.68 at 2 (two evaluation seeds of 120 sounds).
    generator_prediction: str = "v_prediction"
    generator_guidance: float = 1.5
    # Draw every scene in a fixed pose, the shape centred and upright: a sound carries no rotation or
    # position, and a generator that must also choose them in 1 500 CPU steps draws blobs and dots
    # (picture-conditioned consistency at guidance 2: 0.59 -> 0.69 upright -> 0.83 centred too; 0.92 at 1).
    generator_canonical: bool = True
    # Train on picture embeddings jittered by up to cosine ~0.7 (noise augmentation, as Stable unCLIP does
    # with its image embeddings): a sound lands near, not on, its pictures (cosine about 0.7 to their mean),
    # and the jittered generator reads such embeddings by their attributes as the zero-shot classifier does.
    # It replaces training on the heard sounds' own embeddings, which snapped never-heard sounds onto heard
    # pairs: from sounds 0.72 -> 0.81, never-heard pairs 0.49 -> 0.70 (two evaluation seeds).
    generator_cond_noise: float = 1.0
    # Pull sounds onto their pictures so the generator (trained on picture embeddings) can follow them:
    # at 0.3, seen-sound generation consistency 0.13 -> 0.33 with retrieval unchanged (1.0 costs unseen R@1).
    audio_align_weight: float = 0.3
    examples: int = 8
    # 48 sounds gave figures that moved by 0.15 between sampling seeds, 120 by 0.08 (0.81 to 0.88 over four
    # seeds); 240 pin them to about +-0.03.
    eval_generations: int = 240

    @classmethod
    def reduced(cls) -> "StarterSettings":
        """A CI-sized build: same code path, a fraction of the data and steps."""
        return cls(n_per_combo=14, backbone_steps=250, audio_steps=150, generator_steps=150, audio_batch=32,
                   generator_batch=32, generator_channels=(32, 64, 64), generator_ema=0.99, examples=3,
                   eval_generations=12)


def starter_model_config(backbone_dir: Path, backbone_id: str) -> WavBriVLConfig:
    """A small two-stream encoder on 48 mel bands with 3-second windows (the world's sounds are 3 s long).

    The frozen space is additive in the attributes (a held-out pair's pictures sit where its colour's and
    its shape's pictures meet). The encoder keeps that form for sounds: its spectral stream hears pitch
    (colour), its temporal stream hears rhythm and length (shape, size), and a single linear head adds
    them, so an unheard pitch x rhythm pair lands where its parts point. Against the same backbone and
    training, unseen-pair R@1 0.35 -> 0.70 and unseen zero-shot shape 0.47 -> 0.70 compared with a ResNet
    trunk (which learns joint detectors), and 286 s of training instead of 367 s. An MLP head loses some
    of the additivity too (unseen R@1 0.31 against 0.27 with the ResNet).

    A red glide was the one unheard pair the encoder missed (16 of 120 heard as glides). Below 700 Hz a mel
    band is a fixed ~34 Hz wide, so the red register's 50-100 Hz glide spans two bands, and a 25 ms window
    smears any tone over +-80 Hz: a glide looks like a steady hum. A 64 ms window (n_fft 1024) resolves it,
    and a small contour branch (``contour_channels``) reads the spectrum's local form max-pooled over
    frequency, so "a smeared band means a glide", learnt in the other registers, holds in the red one too.
    Frames every 20 ms instead of 10 (still several per beep) halve the features' and convolutions' cost.
    Together, against the same backbone: red glides heard as glides 16 -> 76 of 120, unseen zero-shot shape
    0.70 -> 0.86, unseen R@1 0.68 -> 0.83, training 286 s -> 230 s.
    """
    return WavBriVLConfig(
        backbone=BackboneConfig(f"local-dir:{backbone_dir}", None, id=backbone_id),
        frontend=FrontEndConfig(n_mels=48, n_fft=1024, win_length=1024, hop_length=320, f_max=4000.0,
                                window_seconds=3.0, hop_seconds=1.5, max_seconds=600.0),
        encoder=EncoderConfig(arch="twostream", stem_channels=16, channels=[32, 64, 128], head_hidden=[], embed_dim=64,
                              contour_channels=16),
        embed_dim=64,
        preset="starter",
        info={"bundle": "wavbrivl offline starter world"},
    )


def build_starter(out: str | Path, settings: StarterSettings | None = None, work: str | Path | None = None) -> dict[str, Any]:
    """Build the whole bundle into ``out``; returns the evaluation report."""
    from .data import read_manifest
    from .generate import Generator, train_embedding_generator
    from .index import GalleryIndex
    from .starter_backbone import save_backbone, train_backbone, weights_digest
    from .train import TrainConfig, train
    from .world import write_world

    s = settings or StarterSettings()
    out = Path(out)
    work = Path(work) if work else out.parent / f".{out.name}-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    manifest = write_world(work / "world", n_per_combo=s.n_per_combo, seed=s.seed)
    rows = read_manifest(manifest)
    timings["world_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    pics, attrs = picture_set(rows, s.n_per_combo, s.seed)
    clip_model, clip_losses = train_backbone(pics, attrs, steps=s.backbone_steps, seed=s.seed)
    backbone_dir = save_backbone(clip_model, work / "backbone")
    backbone_id = f"wavbrivl-starter-clip/{weights_digest(backbone_dir)}"
    timings["backbone_s"] = time.perf_counter() - t

    t = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.seed)
        model = WavBriVL(starter_model_config(backbone_dir, backbone_id))
    init_dir = model.save_pretrained(work / "init")
    result = train(TrainConfig(
        manifest=str(manifest), out=str(work / "audio_run"), init=str(init_dir), max_steps=s.audio_steps,
        batch_size=s.audio_batch, lr=3e-3, warmup_steps=50, queue_size=4096, val_every=max(50, s.audio_steps // 4),
        checkpoint_every=10**9, seed=s.seed, progress=False, time_mask_width=20, freq_mask_width=6,
        align_weight=s.audio_align_weight,
    ))
    timings["audio_encoder_s"] = time.perf_counter() - t

    t = time.perf_counter()
    # The last checkpoint, not the best on validation: validation holds seen pairs only, and selecting on
    # it picks early checkpoints that generalise worse to unseen pairs (0.24 against 0.31 unseen R@1).
    model = WavBriVL.from_pretrained(result.last_dir)
    # The generator learns from the backbone's pictures (held-out pairs included: like the backbone, an
    # image generator may know every picture; only the audio encoder must not have heard the pair),
    # conditioned on their embeddings; with generator_canonical it learns to draw each scene centred and upright.
    gen_images = picture_set(rows, s.n_per_combo, s.seed, canonical=True)[0] if s.generator_canonical else pics
    gen_emb = model.embed_image(pics)
    pipe, gen_losses = train_embedding_generator(gen_images, gen_emb, seed=s.seed, progress=False,
                                                 **starter_generator_options(s))
    timings["generator_s"] = time.perf_counter() - t

    # Assemble the bundle in a temporary folder, then swap it in.
    t = time.perf_counter()
    staging = out.parent / f".{out.name}-staging"
    shutil.rmtree(staging, ignore_errors=True)
    model.config.info.update({"bundle": "wavbrivl offline starter world", "seed": s.seed})
    model.save_pretrained(staging)
    generator = Generator(pipe, space_id=model.backbone_id, embed_dim=model.embed_dim, embed_norm=model.config.image_embed_norm)
    generator.save_pretrained(staging / "generator")
    test_rows = [r for r in rows if r.split == "test"]
    (staging / "gallery").mkdir()
    gallery = []
    for r in test_rows:
        dst = staging / "gallery" / r.images[0].name
        shutil.copy(r.images[0], dst)
        gallery.append(dst)
    (staging / "gallery" / "captions.txt").write_text("\n".join(caption_for(*c) for c in all_combinations()) + "\n")
    with open(staging / "gallery" / "manifest.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "caption", "colour", "shape", "size", "seen"])
        for r, path in zip(test_rows, gallery):
            w.writerow([path.name, r.caption, r.meta["colour"], r.meta["shape"], r.meta["size"], r.meta["seen"]])
    loaded = WavBriVL.from_pretrained(staging)
    GalleryIndex.build(loaded, staging / "index", images=staging / "gallery" / "manifest.csv",
                       captions=staging / "gallery" / "captions.txt", dtype="float32", progress=False)
    (staging / "examples").mkdir()
    picks = _example_rows(test_rows, s.examples)
    for r in picks:
        shutil.copy(r.audio, staging / "examples" / f"{r.meta['size']}_{r.meta['colour']}_{r.meta['shape']}.wav")
    timings["assemble_s"] = time.perf_counter() - t

    t = time.perf_counter()
    report = evaluate_bundle(loaded, Generator.from_pretrained(staging / "generator", device="cpu"), test_rows, gallery,
                             [r.label for r in test_rows], n_generations=s.eval_generations, seed=s.seed)
    timings["evaluate_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    report["build"] = {"settings": asdict(s), "timings": timings, "backbone_id": backbone_id,
                       "backbone_final_loss": float(np.mean(clip_losses[-20:])),
                       "audio_val": result.best_metrics, "generator_final_loss": float(np.mean(gen_losses[-50:])),
                       "skipped_rows": len(result.skipped)}
    write_report(report, staging)
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    shutil.rmtree(work, ignore_errors=True)
    return report


def picture_set(rows, n_per_combo: int, seed: int, canonical: bool = False) -> tuple[list, list[dict[str, str]]]:
    """The pictures the backbone and the generator learn from, with their attributes.

    Every picture except the test split's (the gallery must hold unseen pictures), first and in the rows'
    order, then pictures of the held-out pairs drawn afresh from other seeds: the picture models may know
    what a red triangle looks like; only the audio encoder must never have heard one. ``rows`` is the
    manifest of ``write_world(n_per_combo=n_per_combo, seed=seed)``.

    ``canonical`` redraws the same scenes in a fixed pose, the shape centred and upright (see
    :func:`~wavbrivl.world.render_image`): the generator's targets. Position i of both sets is the same
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


def starter_generator_options(s: StarterSettings) -> dict[str, Any]:
    """Keyword arguments of :func:`~wavbrivl.generate.train_embedding_generator` for the starter generator."""
    return dict(steps=s.generator_steps, batch_size=s.generator_batch, lr=s.generator_lr,
                channels=tuple(s.generator_channels), patch_size=s.generator_patch, ema_decay=s.generator_ema,
                snr_gamma=s.generator_snr_gamma, prediction_type=s.generator_prediction,
                guidance_scale=s.generator_guidance, cond_noise=s.generator_cond_noise)


def write_bundle_world(bundle: str | Path, out: str | Path) -> Path:
    """Regenerate the world a bundle was built from (same seed and size, from its ``report.json``)."""
    from .world import write_world

    report_path = Path(bundle) / "report.json"
    if not report_path.is_file():
        raise FileNotFoundError(f"{report_path}: not a starter bundle (no report.json)")
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


def attribute_classifiers(model: WavBriVL) -> dict[str, tuple[list[str], torch.Tensor]]:
    """Zero-shot class embeddings per attribute: the mean text embedding of every canonical caption naming the value."""
    out = {}
    for attr, values in ATTRIBUTES.items():
        keys = list(ATTRIBUTES)
        embs = []
        for v in values:
            captions = [caption_for(*c) for c in all_combinations() if c[keys.index(attr)] == v]
            embs.append(F.normalize(model.embed_text(captions).mean(0), dim=0))
        out[attr] = (list(values), torch.stack(embs))
    return out


def evaluate_bundle(
    model: WavBriVL, generator, rows, gallery_paths, gallery_labels, *,
    n_generations: int = StarterSettings.eval_generations, seed: int = 0, pair_of_row: list[int] | None = None,
) -> dict[str, Any]:
    """Seen/unseen retrieval, zero-shot attribute accuracy from audio, and generation consistency.

    ``pair_of_row[i]`` is the gallery position of row i's own picture (default: the same position).
    """
    from .metrics import retrieval_metrics

    audio = model.embed_audio_many([r.audio for r in rows], batch_size=64)
    keep = audio.indices
    pairs = [(pair_of_row or list(range(len(rows))))[i] for i in keep]
    rows = [rows[i] for i in keep]
    images = model.embed_image([str(p) for p in gallery_paths])
    labels = [r.label for r in rows]
    sim = audio.embeddings @ images.T
    classifiers = attribute_classifiers(model)
    report: dict[str, Any] = {"clips": len(rows), "skipped": [m for _, m in audio.errors], "gallery_images": len(gallery_paths)}
    for group in ("seen", "unseen"):
        mask = np.array([(r.meta["seen"] == "True") == (group == "seen") for r in rows])
        if not mask.any():
            continue
        q = torch.from_numpy(mask)
        same_label = torch.tensor([[a == b for b in gallery_labels] for a in np.array(labels)[mask]])
        exact = torch.zeros(len(rows), len(gallery_paths), dtype=torch.bool)
        exact[torch.arange(len(rows)), torch.tensor(pairs)] = True
        exact = exact[q]
        entry = {"clips": int(mask.sum())}
        entry["audio_to_image"] = retrieval_metrics(sim[q], same_label)
        entry["audio_to_image"]["chance_R@1"] = float(same_label.float().mean())
        entry["audio_to_image_exact_pair"] = retrieval_metrics(sim[q], exact)
        for attr, (values, cls) in classifiers.items():
            truth = torch.tensor([values.index(r.meta[attr]) for r in np.array(rows, dtype=object)[mask]])
            pred = (audio.embeddings[q] @ cls.T).argmax(1)
            entry[f"zeroshot_{attr}"] = float((pred == truth).float().mean())
        report[group] = entry
    # Generation consistency: generated pictures classified by the frozen image tower. Half the sounds are
    # drawn from seen and half from unseen combinations, and each group is reported on its own too.
    rng = np.random.default_rng(seed)
    seen_idx = [i for i, r in enumerate(rows) if r.meta["seen"] == "True"]
    unseen_idx = [i for i, r in enumerate(rows) if r.meta["seen"] != "True"]
    half = n_generations // 2
    picks = np.concatenate([rng.permutation(seen_idx)[: n_generations - min(half, len(unseen_idx))],
                            rng.permutation(unseen_idx)[:half]]).astype(int) if rows else np.zeros(0, dtype=int)
    emb = audio.embeddings[torch.from_numpy(picks)]
    generated = []
    for i in range(0, len(picks), 16):
        generated += generator.generate(emb[i : i + 16], space_id=model.backbone_id, seed=seed + i, steps=25)
    gen_emb = model.embed_image(generated)
    match = np.ones(len(picks), dtype=bool)
    per_attr = {}
    for attr, (values, cls) in classifiers.items():
        truth = np.array([values.index(rows[int(k)].meta[attr]) for k in picks])
        pred = (gen_emb @ cls.T).argmax(1).numpy()
        per_attr[attr] = float((pred == truth).mean())
        match &= pred == truth
    seen_mask = np.array([rows[int(k)].meta["seen"] == "True" for k in picks], dtype=bool)
    report["generation"] = {"samples": int(len(picks)), "consistency": float(match.mean()), "per_attribute": per_attr,
                            "seen": float(match[seen_mask].mean()) if seen_mask.any() else None,
                            "unseen": float(match[~seen_mask].mean()) if (~seen_mask).any() else None}
    show = sorted(set(range(min(4, len(picks)))) | set(range(max(0, len(picks) - 4), len(picks))))  # 4 seen, 4 unseen
    report["_generated_examples"] = [(rows[int(picks[j])].label, generated[j]) for j in show]
    return report


def report_table(report: dict[str, Any]) -> list[str]:
    """Markdown lines: seen/unseen retrieval and zero-shot, then generation consistency."""
    lines = ["| split | clips | audio→image R@1 (chance) | R@5 | zero-shot colour | shape | size |", "|---|---|---|---|---|---|---|"]
    for group in ("seen", "unseen"):
        if group in report:
            e = report[group]
            a = e["audio_to_image"]
            lines.append(f"| {group} | {e['clips']} | {a['R@1']:.3f} ({a['chance_R@1']:.3f}) | {a['R@5']:.3f} | "
                         f"{e['zeroshot_colour']:.3f} | {e['zeroshot_shape']:.3f} | {e['zeroshot_size']:.3f} |")
    g = report.get("generation")
    if g:
        lines.append("")
        lines.append(f"Generation consistency (all three attributes of the generated picture match the sound, judged by the frozen "
                     f"image tower): **{g['consistency']:.3f}** over {g['samples']} sounds (seen {g.get('seen') or 0:.3f}, "
                     f"unseen {g.get('unseen') or 0:.3f}); per attribute "
                     + ", ".join(f"{k} {v:.3f}" for k, v in g["per_attribute"].items()) + ".")
    return lines


def write_report(report: dict[str, Any], out: Path) -> None:
    """``report.json``, ``report.md`` and ``generated.png`` (sound -> generated picture grid)."""
    from .plots import generated_grid_png

    examples = report.pop("_generated_examples", [])
    if examples:
        generated_grid_png(examples, out / "generated.png")
    (out / "report.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (out / "report.md").write_text("\n".join(report_table(report)) + "\n")
