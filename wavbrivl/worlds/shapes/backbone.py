"""The shapes world's frozen backbone: a small open_clip model trained on its pictures and captions.

A real deployment borrows a backbone pretrained on billions of pairs (``vit-b-32``, ``vit-h-14``); this world
cannot download one, so it makes its own the same way (contrastive image-caption training with open_clip) and
then freezes it, exactly as WavBriVL treats BriVL. The model is a custom open_clip config
(``wavbrivl-shapes-clip.json`` beside this file: a 64 px ModifiedResNet image tower and a 64-d space, with
open_clip's bundled BPE tokenizer), saved in open_clip's ``local-dir:`` format. Why a ResNet and not a ViT of
the same cost, and other measurements: docs/EXPERIMENTS.md.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import open_clip
import torch
from diffusers.optimization import get_cosine_schedule_with_warmup
from PIL import Image
from tqdm.auto import tqdm

from ... import optim
from ...backbone import save_open_clip_folder
from ...losses import multi_positive_clip_loss

log = logging.getLogger(__name__)
MODEL_NAME = "wavbrivl-shapes-clip"
open_clip.add_model_config(Path(__file__).with_name(f"{MODEL_NAME}.json"))


#: Captions that name only some attributes, as real alt-texts do ("a red shape", "a small triangle").
PARTIAL_TEMPLATES: dict[tuple[str, ...], str] = {
    ("colour",): "a {colour} shape",
    ("shape",): "a {shape}",
    ("size",): "a {size} shape",
    ("colour", "shape"): "a {colour} {shape}",
    ("colour", "size"): "a {size} {colour} shape",
    ("shape", "size"): "a {size} {shape}",
}


def train_backbone(
    images: Sequence[Image.Image],
    attributes: Sequence[dict[str, str]],
    *,
    steps: int = 1500,
    batch_size: int = 128,
    lr: float = 1e-3,
    partial: float = 0.6,
    seed: int = 0,
    progress: bool = True,
    model_name: str = MODEL_NAME,
) -> tuple[torch.nn.Module, list[float]]:
    """CLIP-train the shapes model on pictures and captions of their attributes; returns it frozen, and its losses.

    Each step, a picture is paired with its full caption or, with probability ``partial``, a caption naming
    a random subset of its attributes. Partial captions make the space compositional (a "red triangle" sits
    where "red" and "triangle" meet), which is what lets the audio encoder place colour x shape pairs it
    never heard; with full captions only, the 24 combinations become unrelated points and unseen pairs fail.
    """
    from .world import CAPTION_TEMPLATES

    torch.manual_seed(seed)
    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=None)
    tokenizer = open_clip.get_tokenizer(model_name)
    pixels = torch.stack([preprocess(img) for img in images])
    keys = ("colour", "shape", "size")
    subsets = [tuple(keys)] + list(PARTIAL_TEMPLATES)
    # tokens[v, i]: picture i's caption of variant v (0: full, cycling through the full templates).
    texts = [[CAPTION_TEMPLATES[i % len(CAPTION_TEMPLATES)].format(**a) for i, a in enumerate(attributes)]]
    texts += [[PARTIAL_TEMPLATES[sub].format(**a) for a in attributes] for sub in subsets[1:]]
    tokens = torch.stack([tokenizer(t) for t in texts])
    values = torch.tensor([[sorted({a[k] for a in attributes}).index(a[k]) for k in keys] for a in attributes])
    mentions = torch.tensor([[k in sub for k in keys] for sub in subsets])  # [variants, 3]
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = get_cosine_schedule_with_warmup(opt, max(1, min(100, steps // 10)), steps)
    g = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for _step in tqdm(range(steps), desc="training the shapes backbone", disable=not progress):
        idx = torch.randperm(len(pixels), generator=g)[:batch_size]
        variant = torch.where(torch.rand(len(idx), generator=g) < partial,
                              torch.randint(1, len(subsets), (len(idx),), generator=g), torch.zeros(len(idx), dtype=torch.long))
        x = pixels[idx]
        # Light augmentation: small translations keep position from being memorised pixel by pixel.
        shift = torch.randint(-3, 4, (2,), generator=g).tolist()
        x = torch.roll(x, shifts=shift, dims=(2, 3))
        # Caption j is true of picture i when every attribute it mentions has picture i's value.
        agree = values[idx][:, None, :] == values[idx][None, :, :]  # [i, j, attr]
        positive = (agree | ~mentions[variant][None, :, :]).all(-1)
        img_f, txt_f, scale = model(x, tokens[variant, idx])
        loss = multi_positive_clip_loss(img_f, txt_f, scale, positive)
        losses.append(optim.step(loss, opt, sched))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, losses


def save_backbone(model: torch.nn.Module, out_dir: str | Path) -> Path:
    """Write the trained backbone in open_clip's ``local-dir:`` format."""
    return save_open_clip_folder(model, open_clip.get_model_config(MODEL_NAME), out_dir)
