"""A tiny demo world shared by the demo tests: checkpoint + gallery index + generator + example sounds,
laid out as a bundle is (``<ckpt>/index``, ``<ckpt>/generator``, ``<ckpt>/examples``)."""
from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import soundfile as sf
import torch

from wavbrivl import WavBriVL
from wavbrivl.index import GalleryIndex
from wavbrivl.worlds.shapes.world import render_image, render_sound, sample_items


def tiny_generator_dir(model: WavBriVL, out: Path) -> Path:
    """An (untrained) EmbeddingToImagePipeline generator in the tiny model's space, saved as the app loads it."""
    from diffusers import DDIMScheduler, UNet2DConditionModel

    from wavbrivl.embedding_to_image import EmbeddingToImagePipeline, tiny_unet_config
    from wavbrivl.generate import Generator

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**tiny_unet_config(model.embed_dim, sample_size=16, channels=(16, 32)))
    pipe = EmbeddingToImagePipeline(unet=unet, scheduler=DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2"))
    return Generator(pipe, space_id=model.backbone_id, embed_dim=model.embed_dim).save_pretrained(out)


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
        sf.write(ckpt / "examples" / f"{i}_{item.colour}_{item.shape}.wav", render_sound(item, 16000, 3.0), 16000, subtype="PCM_16")
    return {"root": root, "ckpt": ckpt, "items": items}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_app(ckpt: Path, *flags: str) -> tuple[Any, str, Any]:
    """The real app (``app.py``'s own argument parsing, queue and launch settings) on a free local port:
    ``(demo, url, service)``."""
    import app

    args = app.parse_args(["--checkpoint", str(ckpt), "--device", "cpu", "--port", str(free_port()), *flags])
    service = app.make_service(args)
    service.start()
    demo = app.build_demo(service)
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_kwargs(args, service))
    return demo, url, service


def write_card(ckpt: Path, items: list) -> None:
    """A bilingual card for a demo world: name, description and example titles in English and Japanese."""
    from wavbrivl.bundle import BundleCard, ExampleSound

    examples = [ExampleSound(f"examples/{p.name}", label=f"{items[i].colour} {items[i].shape}", heard=i != 1,
                             title={"en": f"example {i}: a {items[i].colour} {items[i].shape}", "ja": f"例 {i}：{items[i].shape} の音"})
                for i, p in enumerate(sorted((ckpt / "examples").glob("*.wav")))]
    BundleCard(name={"en": "Tiny test world", "ja": "小さなテストの世界"},
               description={"en": "Sounds of a tiny test world.", "ja": "小さなテストの世界の音です。"},
               labels=sorted({it.caption for it in items}), templates=["{}"], examples=examples).save(ckpt)
