"""Retarget a bundle into another frozen embedding space: a fresh audio head trained on the bundle's own pairs.

A bundle's audio head points sounds into one frozen image–text space. Another space (a bigger open_clip model,
the one a generator consumes) needs another head, not another dataset: the bundle carries the pairs its head
learnt from (``pairs/``, :mod:`wavbrivl.pairs`) and the recipe it was trained with (``train_recipe`` in
``pairs.json``), so this module can repeat the training in the new space with no knowledge of the world that
built the bundle. Steps, each with the project's one implementation:

1. the new frozen backbone embeds the pairs' pictures and captions once (:mod:`wavbrivl.cache`: cached on
   disk per space, resumable, so a second run embeds nothing);
2. a fresh head on the frozen trunk (the bundle's, or the published Wav2CLIP one) is trained with the
   project's :class:`~wavbrivl.train.Trainer` and the bundle's recipe (MoCo queue and all); the trainer
   records the raw image-embedding norm a generator needs (``image_embed_norm``);
3. the bundle's gallery pictures and captions are indexed in the new space (:class:`~wavbrivl.index.GalleryIndex`);
4. zero-shot and audio→picture retrieval on the pairs' held-out ``test`` split (:func:`~wavbrivl.evaluate.run_evaluation`,
   through the new bundle as the demo loads it);
5. the bundle is written whole (card, index, pairs, examples, report) and swapped into place; the source's
   generator comes along only when it consumes the new space.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .backbone import BackboneConfig, FrozenBackbone, weights_digest
from .bundle import BundleCard, BundlePart, GeneratorSettings
from .cache import image_targets, missing_images, text_embeddings
from .index import GalleryIndex
from .model import WavBriVL, WavBriVLConfig
from .pairs import TrainingPairs
from .pipeline import GENERATOR_DIR, WavBriVLPipeline
from .presets import PRESETS, get_preset

log = logging.getLogger(__name__)

#: ``--backbone`` values that are not a preset: the bundle's own frozen model.
OWN_BACKBONE = "bundle"
#: Files of a source bundle that say where its data came from and under which licences; carried over as they are.
CARRIED = ("DATA.md", "data_card.json", "LICENSES", "LICENSE", "gallery")
#: The recipe when a bundle recorded none: the trainer's defaults, head only (the trunk stays as it is).
DEFAULT_RECIPE: dict[str, Any] = {"train_head_only": True, "max_steps": 400, "lr": 2e-3}


@dataclass
class RetargetResult:
    """The written bundle, its report (``report.json``), and the training run's validation figures."""

    bundle: Path
    report: dict[str, Any]


def default_cache_dir() -> Path:
    """Where frozen embeddings are cached between runs: ``$WAVBRIVL_CACHE``, else ``~/.cache/wavbrivl/embeddings``."""
    return Path(os.environ.get("WAVBRIVL_CACHE") or Path.home() / ".cache" / "wavbrivl" / "embeddings")


def device_batch_size(device: str | torch.device) -> int:
    """Pictures per batch through a frozen image tower: small on a CPU (memory and cache-sized), large on a GPU."""
    return 256 if torch.device(device).type == "cuda" else 32


def resolve_backbone(spec: str, source: WavBriVL) -> BackboneConfig:
    """``--backbone SPEC`` as a backbone config: a preset name, ``bundle`` (the source's own frozen model), or an
    open_clip ``hf-hub:org/repo`` / ``local-dir:PATH`` spec (a local folder's space id is its weights' digest)."""
    if spec == OWN_BACKBONE:
        return dataclasses.replace(source.config.backbone)
    if spec in PRESETS:
        return get_preset(spec).backbone
    if spec.startswith("hf-hub:"):
        return BackboneConfig(spec, None, id=spec)
    if spec.startswith("local-dir:"):
        folder = Path(spec[len("local-dir:"):]).resolve()
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such open_clip local-dir folder (--backbone {spec})")
        return BackboneConfig(f"local-dir:{folder}", None, id=f"local-dir:{folder.name}/{weights_digest(folder)}")
    raise ValueError(f"--backbone {spec!r}: give a preset ({', '.join(PRESETS)}), '{OWN_BACKBONE}', "
                     "or an open_clip 'hf-hub:ORG/REPO' or 'local-dir:PATH' spec")


def trunk_model(trunk: str, source: WavBriVL) -> WavBriVL:
    """The model whose trunk (front end + CNN) goes under the new head: the bundle's, or ``wav2clip:CKPT``'s."""
    if trunk == OWN_BACKBONE:
        return source
    if trunk.startswith("wav2clip:"):
        from .wav2clip import import_wav2clip

        return import_wav2clip(trunk[len("wav2clip:"):])
    raise ValueError(f"--trunk {trunk!r}: give '{OWN_BACKBONE}' or 'wav2clip:PATH' (Wav2CLIP's published checkpoint)")


def new_model(source: WavBriVL, trunk: WavBriVL, spec: str, *, device: str, seed: int, info: dict[str, Any]) -> WavBriVL:
    """``trunk``'s front end and CNN (its weights) under a freshly initialised head sized for the new space."""
    config = resolve_backbone(spec, source)
    root = source.root if spec == OWN_BACKBONE else None  # the bundle's own local backbone is found beside it
    backbone = FrozenBackbone(config, root=root, context=spec).to(device)
    dim = backbone.embed_dim
    encoder = dataclasses.replace(trunk.config.encoder, embed_dim=dim)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = WavBriVL(WavBriVLConfig(config, trunk.config.frontend, encoder, embed_dim=dim,
                                        preset=spec if spec in PRESETS else None, info=info),
                         root=root, device=device, backbone=backbone)
    model.audio_encoder.trunk.load_state_dict(trunk.audio_encoder.trunk.state_dict())
    return model


def embed_pairs(model: WavBriVL, pairs: TrainingPairs, cache_dir: Path, *, progress: bool) -> dict[str, int]:
    """Send every picture and caption of the pairs through the new frozen towers once (the trainer then finds them
    all in the cache); returns how many pictures were new and how many were cached already."""
    rows = pairs.rows
    distinct = len({p for r in rows for p in r.images})
    new = missing_images(model, rows, cache_dir)
    batch = device_batch_size(model.device)
    image_targets(model, rows, cache_dir, batch_size=batch, progress=progress)
    captions = sorted({r.caption for r in rows if r.caption})
    if captions:
        text_embeddings(model, captions, cache_dir, batch_size=batch)
    return {"pictures": distinct, "pictures_embedded": new, "pictures_cached": distinct - new, "captions": len(captions)}


def train_head(model: WavBriVL, pairs: TrainingPairs, work: Path, cache_dir: Path, *, steps: int | None,
               seed: int | None, progress: bool) -> tuple[WavBriVL, dict[str, Any], dict[str, Any]]:
    """The fresh head trained with the bundle's recipe; returns the best checkpoint, its validation figures and
    the recipe as run."""
    from .train import TrainConfig, Trainer

    recipe = {**(pairs.train_recipe or DEFAULT_RECIPE), "train_head_only": True}
    cfg = TrainConfig.from_recipe(recipe, manifest=pairs.manifest, out=work / "train", source=str(pairs.root / "pairs.json"),
                                  cache_dir=str(cache_dir), max_steps=steps, seed=seed, progress=progress,
                                  device="cpu" if model.device.type == "cpu" else None)
    trainer = Trainer(cfg, model)
    result = trainer.fit()
    best = WavBriVL.from_pretrained(result.best_dir, device=model.device)
    return best, result.best_metrics, {**cfg.recipe(), "skipped_rows": len(result.skipped)}


def gallery_index(source: WavBriVLPipeline, model: WavBriVL, out: Path, *, progress: bool) -> GalleryIndex | None:
    """The source gallery's pictures (with their captions) and caption rows, embedded in the new space."""
    if source.index is None:
        return None
    _, images = source.index.embeddings("image")
    _, texts = source.index.embeddings("text")
    pictures = [(source.index.root / r["path"], r.get("caption") or "") for r in images]
    index, report = GalleryIndex.build(model, out, images=pictures, captions=[r["caption"] for r in texts],
                                       batch_size=device_batch_size(model.device), progress=progress)
    for item, reason in report.skipped:
        log.warning("gallery: skipped %s (%s)", item, reason)
    return index


def retargeted_card(card: BundleCard, model: WavBriVL, spec: str, keeps_generator: bool) -> BundleCard:
    """The source card for the new space: parts of what is not carried over (its backbone, its generator) left out,
    the new backbone named, and the generator settings kept only with the generator."""
    dropped = ([] if spec == OWN_BACKBONE else ["backbone/"]) + ([] if keeps_generator else [f"{GENERATOR_DIR}/"])
    parts = [p for p in card.parts if not (p.files and all(f.startswith(tuple(dropped)) for f in p.files))]
    if spec != OWN_BACKBONE:
        parts.append(BundlePart("frozen backbone", "the licence its publisher gives",
                                f"open_clip {model.config.backbone.model_name} ({model.backbone_id}), referenced or "
                                "stored in backbone/", ["backbone/"] if model.stores_backbone() else []))
    note = f" Retargeted into the embedding space {model.backbone_id} (wavbrivl retarget)."
    description = ({k: v + note for k, v in card.description.items()} if isinstance(card.description, dict)
                   else f"{card.description}{note}".strip())
    return dataclasses.replace(card, description=description, parts=parts,
                               generator=card.generator if keeps_generator else GeneratorSettings())


def generator_space(folder: Path) -> str | None:
    """The space a saved generator consumes (its ``wavbrivl_generator.json``), without loading its weights."""
    from .generate import GENERATOR_CONFIG

    path = folder / GENERATOR_CONFIG
    return json.loads(path.read_text()).get("space_id") if path.is_file() else None


def retarget_bundle(
    source: WavBriVLPipeline,
    backbone: str,
    out: str | os.PathLike,
    *,
    trunk: str = OWN_BACKBONE,
    steps: int | None = None,
    seed: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    device: str | None = None,
    progress: bool = True,
) -> RetargetResult:
    """Write into ``out`` a bundle whose fresh head points ``source``'s sounds into the space of ``backbone``.

    See the module docstring for the steps. ``steps``/``seed`` override the recipe's; ``cache_dir`` holds the frozen
    embeddings between runs (default :func:`default_cache_dir`). Raises ``ValueError`` naming the bundle when it
    carries no training pairs.
    """
    from .datasets import load_dataset
    from .evaluate import render_markdown, run_evaluation

    src_root = source.model.root
    pairs = source.training_pairs
    if pairs is None:
        raise ValueError(f"{src_root or source.name}: this bundle carries no training pairs (pairs/), so it cannot be "
                         "retargeted; rebuild it with its pairs, or train a new head with `wavbrivl train`")
    out = Path(out).resolve()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    work = out.parent / f".{out.name}.work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        model = new_model(source.model, trunk_model(trunk, source.model), backbone, device=device,
                          seed=pairs.train_recipe.get("seed", 0) if seed is None else seed,
                          info={"retargeted_from": source.backbone_id, "bundle": source.name, "trunk": trunk})
        log.info("retargeting %s into %s", src_root, model.backbone_id)
        embedded = embed_pairs(model, pairs, cache, progress=progress)
        best, validation, recipe = train_head(model, pairs, work, cache, steps=steps, seed=seed, progress=progress)
        index = gallery_index(source, best, work / "index", progress=progress)
        keeps_generator = src_root is not None and generator_space(src_root / GENERATOR_DIR) == best.backbone_id
        card = retargeted_card(source.card, best, backbone, keeps_generator)
        staging = WavBriVLPipeline(best, index=index, card=card).save_pretrained(work / "bundle", files_from=src_root)
        if keeps_generator:
            shutil.copytree(src_root / GENERATOR_DIR, staging / GENERATOR_DIR)
        for name in CARRIED:
            if src_root is not None and (src_root / name).exists():
                copy = shutil.copytree if (src_root / name).is_dir() else shutil.copyfile
                copy(src_root / name, staging / name)

        # Evaluate the bundle as it will be loaded (the classifier the demo uses), on the pairs' held-out split.
        written = WavBriVLPipeline.from_pretrained(staging, device=device, generator=None)
        data = load_dataset(written.training_pairs.manifest, "manifest")
        evaluation = run_evaluation(written, data, ["zeroshot", "retrieval"], work / "eval", checkpoint=out.name,
                                    split="test" if any(r.split == "test" for r in data.rows) else None,
                                    plots=False, progress=progress, skip_unavailable=True)
        report = {
            "retarget": {"source": source.name, "source_space": source.backbone_id, "space": best.backbone_id,
                         "backbone": backbone, "trunk": trunk, "embed_dim": best.embed_dim,
                         "image_embed_norm": best.config.image_embed_norm, "embedding_cache": embedded,
                         "train_recipe": recipe, "validation": validation,
                         "gallery": len(index) if index is not None else 0,
                         "generator": "carried over (it consumes this space)" if keeps_generator else "none"},
            **evaluation,
        }
        (staging / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        (staging / "report.md").write_text(_retarget_lines(report) + render_markdown(evaluation))
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return RetargetResult(out, report)


def _retarget_lines(report: dict[str, Any]) -> str:
    r = report["retarget"]
    cache = r["embedding_cache"]
    return (f"# Retargeted bundle\n\n`{r['source']}` ({r['source_space']}) → `{r['space']}` ({r['embed_dim']}-d), trunk "
            f"{r['trunk']}; head trained {r['train_recipe'].get('max_steps')} steps with the bundle's recipe; validation "
            f"{json.dumps(r['validation'])}. Pictures embedded {cache['pictures_embedded']}, from the cache "
            f"{cache['pictures_cached']}. Gallery: {r['gallery']} items. Generator: {r['generator']}. "
            f"Raw image-embedding norm: {r['image_embed_norm']}.\n\n")
