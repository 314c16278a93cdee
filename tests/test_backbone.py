"""Backbones whose text tower is referenced from an installed package instead of copied into every checkpoint."""
from __future__ import annotations

import json

import pytest
import torch

from wavbrivl import WavBriVL
from wavbrivl.audio import FrontEndConfig
from wavbrivl.backbone import BackboneConfig, BackboneUnavailableError, create_open_clip, save_open_clip_folder
from wavbrivl.encoder import EncoderConfig
from wavbrivl.model import WavBriVLConfig

from .tiny_text import make_text_package, text_tower_config


@pytest.fixture(scope="module")
def text_config(tmp_path_factory):
    return make_text_package(tmp_path_factory.mktemp("pkgs"))


def test_a_package_text_tower_is_referenced_not_copied(text_config, tmp_path):
    model, _, tokenizer = create_open_clip(text_config)
    folder = save_open_clip_folder(model.eval(), text_config, tmp_path / "backbone", text_package="tiny-text-tower==1")
    saved = json.loads((folder / "open_clip_config.json").read_text())
    assert saved["model_cfg"]["text_cfg"]["hf_model_name"] == "package:tiny_text_tower/model"  # no machine path
    assert saved["wavbrivl"] == {"text_weights": "package", "text_package": "tiny-text-tower==1"}
    from safetensors import safe_open

    with safe_open(str(folder / "open_clip_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and not any(k.startswith("text.") for k in keys) and any(k.startswith("visual.") for k in keys)

    # A checkpoint on that backbone loads it back through the ordinary path: same text and image embeddings.
    config = WavBriVLConfig(backbone=BackboneConfig(f"local-dir:{folder}", None, id="tiny-text/test"),
                            frontend=FrontEndConfig(n_mels=32, window_seconds=1.0, hop_seconds=0.5),
                            encoder=EncoderConfig(stem_channels=8, channels=[8, 16], blocks=[1, 1], head_hidden=[], embed_dim=32),
                            embed_dim=32)
    ckpt = WavBriVL(config).save_pretrained(tmp_path / "ckpt")
    loaded = WavBriVL.from_pretrained(ckpt)
    texts = ["a dog barking", "church bells ringing"]
    expected = model.encode_text(tokenizer(texts), normalize=True)
    assert torch.allclose(loaded.embed_text(texts), expected, atol=1e-5)
    pixels = torch.rand(2, 3, 32, 32)
    assert torch.allclose(loaded.backbone.encode_image(pixels), model.encode_image(pixels, normalize=True), atol=1e-5)
    assert json.loads((ckpt / "backbone" / "open_clip_config.json").read_text())["wavbrivl"]["text_weights"] == "package"


def test_missing_package_and_damaged_weights_say_what_to_do(text_config, tmp_path):
    model, _, _ = create_open_clip(text_config)
    missing = text_tower_config("not_installed_tower")
    folder = save_open_clip_folder(model, missing, tmp_path / "other", text_package="not-installed-tower==2.0")
    backbone = BackboneConfig(f"local-dir:{folder}", None, id="x")
    from wavbrivl.backbone import FrozenBackbone

    with pytest.raises(BackboneUnavailableError, match="pip install not-installed-tower==2.0"):
        FrozenBackbone(backbone)
    good = save_open_clip_folder(model, text_config, tmp_path / "good")
    weights = good / "open_clip_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(BackboneUnavailableError, match="open_clip_model.safetensors: cannot read weights"):
        FrozenBackbone(BackboneConfig(f"local-dir:{good}", None, id="x"))
