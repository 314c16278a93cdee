"""A tiny bundle that carries its training pairs: synthetic tones paired with tiny coloured pictures, a gallery
index, an example sound, a card and a small generator, in a space of its own (the tiny open_clip drawn with seed 1,
so the ``tiny`` preset is another space)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from wavbrivl import WavBriVL, WavBriVLConfig
from wavbrivl.backbone import BackboneConfig
from wavbrivl.bundle import BundleCard, BundlePart, ExampleSound
from wavbrivl.index import GalleryIndex
from wavbrivl.pairs import PAIRS_DIR, write_pairs
from wavbrivl.presets import get_preset
from wavbrivl.train import TrainConfig

from .conftest import tone, write_wav

CONCEPTS = {"bell": (880.0, (220, 40, 40)), "drum": (110.0, (40, 200, 40)), "bird": (2400.0, (40, 40, 220)),
            "horn": (330.0, (220, 200, 40))}
SPLITS = ("train", "train", "train", "val", "test")
RECIPE = TrainConfig(manifest="-", out="-", train_head_only=True, max_steps=6, batch_size=8, lr=3e-3, queue_size=32,
                     val_every=3, checkpoint_every=10**6, caption_weight=0.5, progress=False).recipe()


def picture(path: Path, colour: tuple[int, int, int], shade: int, size: int = 40) -> Path:
    pixels = np.full((size, size, 3), colour, np.uint8)
    pixels[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 255 - shade * 30
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def source_rows(raw: Path) -> list[dict[str, Any]]:
    """Manifest-like rows with absolute paths: 5 clips per concept (3 train, 1 val, 1 test), 1 s, 16 kHz."""
    rows = []
    for name, (freq, colour) in CONCEPTS.items():
        for k, split in enumerate(SPLITS):
            wave = tone(freq * (1 + 0.03 * k), 1.0) * np.hanning(16000).astype(np.float32)
            rows.append({"audio": str(write_wav(raw / f"{name}{k}.wav", wave)),
                         "image": str(picture(raw / f"{name}{k}.png", colour, k)), "caption": f"a {name}",
                         "label": name, "split": split, "source": "synthetic", "package": "tests", "licence": "CC0-1.0"})
    return rows


def tiny_model(seed: int = 1) -> WavBriVL:
    preset = get_preset("tiny")
    config = WavBriVLConfig(BackboneConfig("wavbrivl-tiny-clip", None, init_seed=seed), preset.frontend, preset.encoder,
                            embed_dim=preset.encoder.embed_dim, info={"bundle": "tiny test bundle"})
    return WavBriVL(config)


def build_bundle(root: Path, *, with_pairs: bool = True) -> Path:
    """The bundle folder ``root/bundle`` (with ``pairs/`` unless told otherwise)."""
    from wavbrivl.testing import tiny_generator_dir

    model = tiny_model()
    bundle = model.save_pretrained(root / "bundle")
    gallery = [(picture(root / "gallery" / f"{name}.png", colour, 4), f"a {name}") for name, (_, colour) in CONCEPTS.items()]
    index, _ = GalleryIndex.build(model, root / "index", images=gallery, captions=[f"a {n}" for n in CONCEPTS], progress=False)
    index.export(bundle / "index")  # self-contained, as bundles ship
    write_wav(bundle / "examples" / "bell.wav", tone(900.0, 1.5))
    tiny_generator_dir(model, bundle / "generator")
    BundleCard(name="Tiny tones", description="Tones and coloured squares.", labels=list(CONCEPTS), templates=["a {}"],
               examples=[ExampleSound("examples/bell.wav", label="bell", heard=True)],
               parts=[BundlePart("image generator", "MIT", "tests", ["generator/"]),
                      BundlePart("backbone", "MIT", "random", ["backbone/"])]).save(bundle)
    if with_pairs:
        write_pairs(source_rows(root / "raw"), bundle / PAIRS_DIR, 16000, image_size=24, train_recipe=RECIPE)
    return bundle
