"""The frozen backbone of the offline starter world: a small open_clip model trained on its pictures and captions.

A real deployment borrows a backbone pretrained on billions of pairs (``vit-b-32``, ``vit-h-14``); the
starter world cannot download one, so it makes its own the same way - contrastive image-caption training
with open_clip's CLIP loss - and then freezes it, exactly as WavBriVL treats BriVL. The model is a custom
open_clip config (``wavbrivl/model_configs/wavbrivl-starter-clip.json``: 64 px ViT, 64-d space) using
open_clip's bundled BPE tokenizer, saved in open_clip's ``local-dir:`` format.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import open_clip
import torch
from PIL import Image
from safetensors.torch import save_model
from diffusers.optimization import get_cosine_schedule_with_warmup
from tqdm.auto import tqdm

from . import backbone as _backbone  # noqa: F401  (registers the packaged model configs)

log = logging.getLogger(__name__)
MODEL_NAME = "wavbrivl-starter-clip"


def train_backbone(
    images: Sequence[Image.Image],
    captions: Sequence[str],
    *,
    steps: int = 1200,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = True,
) -> tuple[torch.nn.Module, list[float]]:
    """CLIP-train the starter model on (image, caption) pairs; returns the model (eval, frozen) and its losses."""
    torch.manual_seed(seed)
    model, preprocess_train, _ = open_clip.create_model_and_transforms(MODEL_NAME, pretrained=None)
    tokenizer = open_clip.get_tokenizer(MODEL_NAME)
    _, _, preprocess = open_clip.create_model_and_transforms(MODEL_NAME, pretrained=None)
    pixels = torch.stack([preprocess(img) for img in images])
    tokens = tokenizer(list(captions))
    loss_fn = open_clip.ClipLoss()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = get_cosine_schedule_with_warmup(opt, max(1, min(100, steps // 10)), steps)
    g = torch.Generator().manual_seed(seed)
    losses = []
    model.train()
    for step in tqdm(range(steps), desc="training starter backbone", disable=not progress):
        idx = torch.randperm(len(pixels), generator=g)[:batch_size]
        x = pixels[idx]
        # Light augmentation: small translations keep position from being memorised pixel by pixel.
        shift = torch.randint(-3, 4, (2,), generator=g).tolist()
        x = torch.roll(x, shifts=shift, dims=(2, 3))
        img_f, txt_f, scale = model(x, tokens[idx])
        loss = loss_fn(img_f, txt_f, scale)
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, losses


def save_backbone(model: torch.nn.Module, out_dir: str | Path) -> Path:
    """Write open_clip's ``local-dir:`` format: ``open_clip_config.json`` + ``open_clip_model.safetensors``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": open_clip.get_model_config(MODEL_NAME), "preprocess_cfg": open_clip.get_model_preprocess_cfg(model)}
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_model(model, str(out / "open_clip_model.safetensors"))
    return out


def weights_digest(path: str | Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path, "open_clip_model.safetensors").read_bytes()).hexdigest()[:12]
