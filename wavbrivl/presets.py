"""Named configurations: a backbone (the space) plus a front end and an encoder sized for it.

* ``tiny``: a randomly initialised 32-d open_clip model (seeded) and a tiny encoder; offline, for tests.
* ``vit-b-32``: OpenCLIP ViT-B-32 with OpenAI weights, the space Wav2CLIP was aligned to (512-d).
* ``vit-h-14``: OpenCLIP ViT-H-14 ``laion2b_s32b_b79k`` (1024-d), the space Stable unCLIP 2.1 and IP-Adapter SD 1.5
  consume. Named by its Hugging Face repo (``hf-hub:laion/CLIP-ViT-H-14-laion2B-s32B-b79K``): open_clip then reads
  the architecture from the repo's ``open_clip_config.json`` and the weights from the same repo, both through the
  Hugging Face cache (``HF_HUB_OFFLINE`` and ``HF_HUB_CACHE`` honoured), and the space keeps its open_clip name as id.

The hub presets download their backbone weights on first use of the image/text towers; audio
embedding of a trained checkpoint needs no backbone weights at all.
"""
from __future__ import annotations

from dataclasses import dataclass

from .audio import FrontEndConfig
from .backbone import BackboneConfig
from .encoder import EncoderConfig
from .hub import VIT_H_REPO, VIT_H_SPACE


@dataclass
class Preset:
    name: str
    description: str
    backbone: BackboneConfig
    frontend: FrontEndConfig
    encoder: EncoderConfig


def _tiny() -> Preset:
    return Preset(
        name="tiny",
        description="random 32-d tiny open_clip (seed 0) + tiny encoder; offline, for tests",
        backbone=BackboneConfig("wavbrivl-tiny-clip", None, id="wavbrivl-tiny-clip/random-seed0", init_seed=0),
        frontend=FrontEndConfig(n_mels=32, window_seconds=2.0, hop_seconds=1.0),
        encoder=EncoderConfig(stem_channels=8, channels=[8, 16, 32, 32], blocks=[1, 1, 1, 1], head_hidden=[64], embed_dim=32),
    )


def _vit_b_32() -> Preset:
    return Preset(
        name="vit-b-32",
        description="OpenCLIP ViT-B-32 (OpenAI weights), 512-d: Wav2CLIP's space",
        backbone=BackboneConfig("ViT-B-32", "openai"),
        frontend=FrontEndConfig(),
        encoder=EncoderConfig(embed_dim=512),
    )


def _vit_h_14() -> Preset:
    return Preset(
        name="vit-h-14",
        description="OpenCLIP ViT-H-14 laion2b_s32b_b79k, 1024-d: the space Stable unCLIP 2.1 consumes",
        backbone=BackboneConfig(f"hf-hub:{VIT_H_REPO}", None, id=VIT_H_SPACE),
        frontend=FrontEndConfig(),
        encoder=EncoderConfig(head_hidden=[1024], embed_dim=1024),
    )


PRESETS = {"tiny": _tiny, "vit-b-32": _vit_b_32, "vit-h-14": _vit_h_14}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
