"""Generators and bundles made of Hugging Face Hub parts, offline: tiny real models saved under the real repo ids
in a temporary Hugging Face cache (``models--owner--name/snapshots/<rev>/`` + ``refs/main``), found there by
huggingface_hub with ``HF_HUB_OFFLINE=1`` and loaded through the functions the app calls."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from wavbrivl.cli import main
from wavbrivl.generate import Generator
from wavbrivl.hub import VIT_H_SPACE, GeneratorSource, HubAssetError, generator_source, url_file
from wavbrivl.pipeline import WavBriVLPipeline

from .conftest import tone, write_wav
from .hub_fixtures import DIM, build_generator_cache, put_in_cache, use_cache

@pytest.fixture(scope="module")
def built_cache(tmp_path_factory) -> Path:
    return build_generator_cache(tmp_path_factory.mktemp("hub"))


@pytest.fixture
def hub_cache(built_cache, monkeypatch) -> Path:
    return use_cache(monkeypatch, built_cache)


def unit(seed: int) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.randn(DIM, generator=torch.Generator().manual_seed(seed)), dim=0)


def ip_inputs(gen: Generator) -> list[torch.Tensor]:
    """What reaches the UNet's IP-Adapter projection on each step (a real forward hook, nothing replaced)."""
    seen: list[torch.Tensor] = []
    gen.pipeline.unet.encoder_hid_proj.register_forward_pre_hook(lambda _m, args: seen.append(args[0][0].detach().clone()))
    return seen


def test_ip_adapter_paints_from_a_rescaled_unit_embedding(hub_cache):
    gen = Generator.from_source(generator_source("ip-adapter-sd15"), embed_norm=12.0, device="cpu")
    assert gen.source == "stable-diffusion-v1-5/stable-diffusion-v1-5 + h94/IP-Adapter (models/ip-adapter_sd15.safetensors)"
    assert gen.embed_dim == DIM and gen.space_id == VIT_H_SPACE and gen.backend.needs_gpu
    seen, steps = ip_inputs(gen), []
    emb = unit(1)
    a = gen.generate(emb, space_id=VIT_H_SPACE, seed=0, steps=2, guidance_scale=5.0, height=32, width=32,
                     progress=lambda i, n: steps.append((i, n)))
    assert len(a) == 1 and isinstance(a[0], Image.Image) and a[0].size == (32, 32) and steps == [(1, 2), (2, 2)]
    guided = seen[0]  # classifier-free guidance: [negative; positive], the negative all zeros, as diffusers' own path
    assert guided.shape == (2, 1, DIM) and guided.dtype == torch.float32
    assert torch.count_nonzero(guided[0]) == 0
    assert float(guided[1].norm()) == pytest.approx(12.0, rel=1e-5)
    assert torch.allclose(guided[1, 0] / 12.0, emb, atol=1e-6)
    seen.clear()
    b = gen.generate(emb, space_id=VIT_H_SPACE, seed=0, steps=2, guidance_scale=1.0, height=32, width=32)
    assert seen[0].shape == (1, 1, DIM) and float(seen[0].norm()) == pytest.approx(12.0, rel=1e-5)  # no guidance: positive only
    c = gen.generate(unit(2), space_id=VIT_H_SPACE, seed=0, steps=2, guidance_scale=1.0, height=32, width=32)
    assert not np.array_equal(np.asarray(b[0]), np.asarray(c[0]))  # the picture follows the sound's embedding
    two = gen.generate(torch.stack([emb, unit(2)]), space_id=VIT_H_SPACE, seed=0, steps=1, guidance_scale=1.0, height=32,
                       width=32)
    assert len(two) == 2


def test_lcm_mode_paints_in_few_unguided_steps(hub_cache):
    from diffusers import LCMScheduler

    gen = Generator.from_source(generator_source("ip-adapter-sd15-lcm"), embed_norm=12.0, device="cpu")
    assert isinstance(gen.pipeline.scheduler, LCMScheduler)
    assert not gen.backend.needs_gpu and gen.backend.default_steps == 4 and gen.backend.default_guidance == 1.0
    assert "latent-consistency/lcm-lora-sdv1-5 (LCM-LoRA" in gen.source
    seen, steps = ip_inputs(gen), []
    image = gen.generate(unit(1), space_id=VIT_H_SPACE, seed=0, height=32, width=32, progress=lambda i, n: steps.append(i))
    assert image[0].size == (32, 32) and steps == [1, 2, 3, 4]
    assert all(t.shape == (1, 1, DIM) for t in seen) and len(seen) == 4


def test_unclip_resolves_the_first_candidate_that_exists(hub_cache):
    gen = Generator.from_source(generator_source("unclip-h"), embed_norm=12.0, device="cpu")
    assert gen.source == "sd2-community/stable-diffusion-2-1-unclip" and gen.kind == "StableUnCLIPImg2ImgPipeline"
    seen: list[torch.Tensor] = []
    gen.pipeline.unet.class_embedding.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    image = gen.generate(unit(1), space_id=VIT_H_SPACE, seed=0, steps=2, height=32, width=32)
    assert image[0].size == (32, 32)
    cond = seen[0][-1, :DIM]  # the image half of the class-embedding input (noise level 0 barely moves it)
    assert float(cond.norm()) == pytest.approx(12.0, rel=0.02)


def test_missing_repos_are_named_in_one_message(hub_cache):
    source = GeneratorSource(name="gone", kind="ip-adapter", repos=["nobody/no-such-sd", "nobody/no-such-mirror"],
                             adapter_repo="nobody/no-adapter")
    with pytest.raises(HubAssetError) as info:
        Generator.from_source(source, device="cpu")
    message = str(info.value)
    assert "\n" not in message
    for name in ("nobody/no-such-sd", "nobody/no-such-mirror", "nobody/no-adapter/models/ip-adapter_sd15.safetensors",
                 "HF_HUB_OFFLINE", "assets/everyday"):
        assert name in message


def test_checksum_mismatch_is_refused_naming_the_file(hub_cache, tmp_path):
    pinned = generator_source("ip-adapter-sd15")
    pinned.sha256 = {"h94/IP-Adapter/models/ip-adapter_sd15.safetensors": "0" * 64}
    with pytest.raises(HubAssetError, match="ip-adapter_sd15.safetensors: SHA-256 .* does not match the pinned"):
        Generator.from_source(pinned, device="cpu")
    # No pin: recorded at the first download, verified after.
    src = tmp_path / "ResNet_CX.ckpt"
    src.write_bytes(b"weights v1")
    url = src.as_uri()
    first = url_file(url, local_files_only=False)
    assert url_file(url).read_bytes() == b"weights v1"
    first.write_bytes(b"weights v2, replaced")
    with pytest.raises(HubAssetError, match="ResNet_CX.ckpt: SHA-256 .* recorded at its first download"):
        url_file(url)
    with pytest.raises(HubAssetError, match="assets/everyday"):
        url_file((tmp_path / "never-fetched.ckpt").as_uri())


def hub_bundle(tiny_model, tmp_path: Path, hub: dict) -> Path:
    """A tiny bundle whose card names its generator on the Hub (space: the tiny model's), image-embedding norm 9."""
    folder = tiny_model.save_pretrained(tmp_path / "bundle")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "image_embed_norm": 9.0}))
    card = {"format": "wavbrivl-bundle", "format_version": 1, "name": "hub bundle", "hub": hub}
    (folder / "bundle.json").write_text(json.dumps(card))
    return folder


def test_bundle_from_the_hub_cache_paints_with_the_generator_its_card_names(hub_cache, tiny_model, tmp_path):
    source = {**json.loads(json.dumps(generator_source("ip-adapter-sd15").__dict__)), "name": "tiny-ip",
              "space_id": tiny_model.backbone_id}
    put_in_cache(hub_cache, "someone/wavbrivl-tiny", hub_bundle(tiny_model, tmp_path, {"generators": [source]}))
    stages = []
    pipe = WavBriVLPipeline.from_pretrained("someone/wavbrivl-tiny", device="cpu", generator_on_cpu=True,
                                            on_stage=lambda text, f: stages.append(text))
    assert pipe.name == "hub bundle" and pipe.generator.embed_norm == 9.0
    assert "image generator: stable-diffusion-v1-5/stable-diffusion-v1-5 + h94/IP-Adapter" in " | ".join(stages)
    image = pipe.generate(write_wav(tmp_path / "a.wav", tone(440, 1.0)), steps=2, guidance=1.0)
    assert image.size == (32, 32)
    saved = pipe.save_pretrained(tmp_path / "resaved")  # the generator stays a reference in the card
    assert not (saved / "generator").exists()
    assert json.loads((saved / "bundle.json").read_text())["hub"]["generators"][0]["name"] == "tiny-ip"
    # A generator that needs a GPU is not loaded on a CPU unless asked, with its reason.
    off = WavBriVLPipeline.from_pretrained("someone/wavbrivl-tiny", device="cpu", strict=False)
    assert off.generator is None and "needs a GPU" in off.problems["generator"]


def test_missing_hub_parts_of_a_bundle_make_one_message(hub_cache, tiny_model, tmp_path):
    gone = {"name": "gone", "kind": "unclip", "repos": ["nobody/unclip"]}
    folder = hub_bundle(tiny_model, tmp_path, {"generators": [gone]})
    pipe = WavBriVLPipeline.from_pretrained(folder, device="cpu", strict=False)
    assert pipe.generator is None
    assert "nobody/unclip" in pipe.problems["generator"] and "assets/everyday" in pipe.problems["generator"]
    folder = hub_bundle(tiny_model, tmp_path / "b", {"backbone": "hf-hub:nobody/clip", "generators": [gone]})
    with pytest.raises(HubAssetError) as info:
        WavBriVLPipeline.from_pretrained(folder, device="cpu", strict=False)
    message = str(info.value)
    assert "\n" not in message and "nobody/clip" in message and "nobody/unclip" in message and "assets/everyday" in message


def test_push_refuses_offline_with_one_line(tiny_checkpoint, monkeypatch, capsys):
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["push", str(tiny_checkpoint), "--repo", "someone/wavbrivl-tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "HF_HUB_OFFLINE" in err and "nothing was uploaded" in err
    assert main(["push", str(tiny_checkpoint.parent), "--repo", "someone/x"]) == 2
    assert "not a bundle" in capsys.readouterr().err
