"""Tiny real diffusers and open_clip models saved under the real repo ids in a temporary Hugging Face cache
(``models--owner--name/snapshots/<rev>/`` + ``refs/main``), for tests that load hub parts offline through the
functions the app calls: nothing of open_clip, diffusers or huggingface_hub is replaced."""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from wavbrivl.testing import tiny_text_encoder, tiny_tokenizer, tiny_unclip, tiny_unet

DIM = 32  # the "ViT-H" embedding of these tests: the tiny model's 32-d space
REV = "0123456789abcdef0123456789abcdef01234567"


def put_in_cache(cache: Path, repo_id: str, folder: Path) -> Path:
    """Copy ``folder`` into the cache layout huggingface_hub reads (plain files in the snapshot, refs/main)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(folder, repo / "snapshots" / REV, dirs_exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(REV)
    return repo / "snapshots" / REV


def tiny_sd15(tmp_path: Path):
    """A Stable Diffusion 1.5-shaped pipeline from diffusers' dummy components (no safety checker)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline

    torch.manual_seed(0)
    return StableDiffusionPipeline(
        vae=AutoencoderKL(), text_encoder=tiny_text_encoder(DIM), tokenizer=tiny_tokenizer(tmp_path), unet=tiny_unet(DIM),
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, clip_sample=False,
                                set_alpha_to_one=False, steps_offset=1),
        safety_checker=None, feature_extractor=None, image_encoder=None, requires_safety_checker=False)


def tiny_ip_adapter(unet, path: Path) -> None:
    """IP-Adapter weights in the ``ip-adapter_sd15`` key layout: ``image_proj.proj`` / ``image_proj.norm`` (4 tokens)
    and ``ip_adapter.{1,3,5...}.to_{k,v}_ip`` for each cross-attention layer, in the UNet's processor order."""
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(1)
    cross = unet.config.cross_attention_dim
    state = {"image_proj.proj.weight": torch.randn(4 * cross, DIM, generator=g) * 0.2,
             "image_proj.proj.bias": torch.zeros(4 * cross),
             "image_proj.norm.weight": torch.ones(cross), "image_proj.norm.bias": torch.zeros(cross)}
    key = 1
    for name in unet.attn_processors:
        if name.endswith("attn1.processor"):
            continue
        module = unet.get_submodule(name[: -len(".processor")])
        hidden = module.to_k.out_features
        for kind in ("to_k_ip", "to_v_ip"):
            state[f"ip_adapter.{key}.{kind}.weight"] = torch.randn(hidden, cross, generator=g) * 0.2
        key += 2
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))


def tiny_lcm_lora(folder: Path) -> None:
    """LoRA weights for the tiny UNet's attention, saved the way diffusers saves LoRAs (non-zero, so they act)."""
    from diffusers import StableDiffusionPipeline
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(2)
    unet = tiny_unet(DIM)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False))
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=get_peft_model_state_dict(unet),
                                              weight_name="pytorch_lora_weights.safetensors")


def build_generator_cache(tmp: Path) -> Path:
    """A Hugging Face cache folder ``tmp/cache`` holding tiny SD 1.5, IP-Adapter, LCM-LoRA and unCLIP models under the
    repo ids ``generators.json`` names (unCLIP only under its second candidate)."""
    cache = tmp / "cache"
    tmp.mkdir(parents=True, exist_ok=True)
    sd = tiny_sd15(tmp)
    sd.save_pretrained(tmp / "sd15", safe_serialization=True)
    put_in_cache(cache, "stable-diffusion-v1-5/stable-diffusion-v1-5", tmp / "sd15")
    tiny_ip_adapter(sd.unet, tmp / "ipa" / "models" / "ip-adapter_sd15.safetensors")
    put_in_cache(cache, "h94/IP-Adapter", tmp / "ipa")
    try:
        import peft  # noqa: F401 - LoRA loading in diffusers needs it

        tiny_lcm_lora(tmp / "lcm")
        put_in_cache(cache, "latent-consistency/lcm-lora-sdv1-5", tmp / "lcm")
    except ImportError:
        pass
    tiny_unclip(tmp).save_pretrained(tmp / "unclip", safe_serialization=True)
    put_in_cache(cache, "sd2-community/stable-diffusion-2-1-unclip", tmp / "unclip")  # only the second candidate
    return cache


def tiny_vit_h(cache: Path) -> Path:
    """A tiny ViT-H-14-shaped open_clip model (a ViT with 14-px patches, 32-d embeddings to match the tiny generators)
    saved as the hub repo of the ``vit-h-14`` preset holds it (``open_clip_config.json`` + ``open_clip_model.safetensors``),
    so the preset's own resolution (``hf-hub:`` through the Hugging Face cache) finds it."""
    from wavbrivl.backbone import create_open_clip, save_open_clip_folder
    from wavbrivl.hub import VIT_H_REPO

    cfg = {"embed_dim": DIM, "quick_gelu": False,
           "vision_cfg": {"image_size": 28, "layers": 2, "width": 64, "head_width": 32, "patch_size": 14},
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}}
    torch.manual_seed(3)
    model, _, _ = create_open_clip(cfg)
    folder = save_open_clip_folder(model, cfg, cache.parent / "vit-h")
    return put_in_cache(cache, VIT_H_REPO, folder)


def use_cache(monkeypatch, cache: Path) -> Path:
    """Point huggingface_hub at ``cache`` (its cache setting, as ``HF_HUB_CACHE`` sets it at import) with the Hub off."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache
