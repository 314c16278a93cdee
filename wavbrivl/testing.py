"""Tiny real models for tests and benchmarks: Hugging Face and diffusers components built from small configs with
random weights, so the code paths that load and run the real ones (Stable unCLIP, Stable Diffusion, this project's
embedding-to-image generator) run offline on a CPU in seconds. Nothing here is replaced by a stand-in: these are
the libraries' own classes, only small. Both ``tests/`` and ``benchmarks/`` build from here, so a benchmark never
imports a test module.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from .model import WavBriVL


def tiny_tokenizer(tmp_path: Path) -> Any:
    """A CLIP tokenizer over letters and a few words ("red", "dog"), its vocabulary written into ``tmp_path``."""
    from transformers import CLIPTokenizer

    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = {"<|startoftext|>": 0, "!": 1, "<|endoftext|>": 2}
    for tok in letters + [l + "</w>" for l in letters] + ["re", "red</w>", "do", "dog</w>"]:
        vocab.setdefault(tok, len(vocab))
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\nr e\nre d</w>\nd o\ndo g</w>\n")
    return CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"), model_max_length=77)


def tiny_text_encoder(dim: int = 32) -> Any:
    """diffusers' dummy CLIP text encoder (its tests' config), random weights."""
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(
        bos_token_id=0, eos_token_id=2, hidden_size=dim, projection_dim=dim, intermediate_size=37,
        layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=5, pad_token_id=1, vocab_size=1000))


def tiny_unet(dim: int = 32, **extra: Any) -> Any:
    """diffusers' dummy Stable Diffusion UNet (cross-attention width ``dim``); ``extra``: e.g. unCLIP's class
    embedding settings."""
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=32, in_channels=4, out_channels=4, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), block_out_channels=(32, 64), attention_head_dim=(2, 4),
        cross_attention_dim=dim, layers_per_block=1, upcast_attention=True, use_linear_projection=True, **extra)


def tiny_unclip(tmp_path: Path) -> Any:
    """diffusers' own dummy components for this pipeline (embedding dim 32), built from configs."""
    from diffusers import AutoencoderKL, DDIMScheduler, DDPMScheduler, StableUnCLIPImg2ImgPipeline
    from diffusers.pipelines.stable_diffusion.stable_unclip_image_normalizer import StableUnCLIPImageNormalizer
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    dim = 32
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=dim, projection_dim=dim, num_hidden_layers=5, num_attention_heads=4, image_size=32,
        intermediate_size=37, patch_size=1))
    text_encoder = tiny_text_encoder(dim)
    unet = tiny_unet(dim, class_embed_type="projection", projection_class_embeddings_input_dim=dim * 2)
    return StableUnCLIPImg2ImgPipeline(
        feature_extractor=CLIPImageProcessor(crop_size=32, size=32), image_encoder=image_encoder,
        image_normalizer=StableUnCLIPImageNormalizer(embedding_dim=dim),
        image_noising_scheduler=DDPMScheduler(beta_schedule="squaredcos_cap_v2"),
        tokenizer=tiny_tokenizer(tmp_path), text_encoder=text_encoder, unet=unet,
        scheduler=DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                prediction_type="v_prediction", set_alpha_to_one=False, steps_offset=1),
        vae=AutoencoderKL())


def tiny_generator_dir(model: WavBriVL, out: Path) -> Path:
    """An (untrained) embedding-to-image generator in the tiny model's space, saved as the app loads it."""
    from diffusers import DDIMScheduler, UNet2DConditionModel

    from .embedding_to_image import EmbeddingToImagePipeline, tiny_unet_config
    from .generate import Generator

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**tiny_unet_config(model.embed_dim, sample_size=16, channels=(16, 32)))
    scheduler = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2")
    pipe = EmbeddingToImagePipeline(unet=unet, scheduler=scheduler)
    return Generator(pipe, space_id=model.backbone_id, embed_dim=model.embed_dim).save_pretrained(out)
