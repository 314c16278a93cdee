"""A tiny demo bundle of the shapes world, for tests and benchmarks of the demo: a checkpoint with a gallery index
of rendered pictures, an untrained generator and example sounds, laid out as a bundle is (``<ckpt>/index``,
``<ckpt>/generator``, ``<ckpt>/examples``)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import soundfile as sf

from ...index import GalleryIndex
from ...testing import tiny_generator_dir
from .world import render_image, render_sound, sample_items

if TYPE_CHECKING:
    from ...model import WavBriVL


def build_demo_world(root: Path, model: WavBriVL, n_items: int = 12) -> dict[str, Any]:
    """12 world pictures with captions indexed by ``model``, a generator, and 3 example sounds."""
    ckpt = model.save_pretrained(root / "ckpt")
    items = sample_items(n_items, seed=3)
    (root / "images").mkdir()
    paths = []
    for i, item in enumerate(items):
        paths.append(root / "images" / f"{i:02d}.png")
        render_image(item, 32).save(paths[-1])
    GalleryIndex.build(model, ckpt / "index", images=paths, captions=[it.caption for it in items], progress=False)
    tiny_generator_dir(model, ckpt / "generator")
    (ckpt / "examples").mkdir()
    for i, item in enumerate(items[:3]):
        sf.write(ckpt / "examples" / f"{i}_{item.colour}_{item.shape}.wav", render_sound(item, 16000, 3.0), 16000,
                 subtype="PCM_16")
    return {"root": root, "ckpt": ckpt, "items": items}
