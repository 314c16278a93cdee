"""Audio-to-image generation: an embedding from the shared space drives a diffusers pipeline.

The audio embedding lives in the frozen image tower's space, so it can stand where an *image* embedding
goes in an image-embedding-conditioned diffusion model. Two backends share one interface,
:class:`Generator`:

* ``StableUnCLIPImg2ImgPipeline`` (``stabilityai/stable-diffusion-2-1-unclip``), which consumes OpenCLIP
  ViT-H-14 (``laion2b_s32b_b79k``) image embeddings: pair it with checkpoints of the ``vit-h-14`` preset.
* :class:`EmbeddingToImagePipeline`, a small pixel-space UNet conditioned on the embedding, trained by this
  project for the offline starter world (:func:`train_embedding_generator`).

Why embeddings are rescaled: the audio encoder outputs unit vectors (only direction carries meaning in a
cosine space), but unCLIP was trained on *raw* projected image embeddings whose norm is far from 1 (about
15-20 for ViT-H-14). Feeding a unit vector would look like a nearly blank image embedding to the pipeline,
so the direction is rescaled to the mean raw image-embedding norm measured on the training images and
recorded in the checkpoint (``config.image_embed_norm``).
"""
from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

log = logging.getLogger(__name__)

UNCLIP_MODEL_ID = "stabilityai/stable-diffusion-2-1-unclip"
UNCLIP_SPACE = "ViT-H-14/laion2b_s32b_b79k"
GENERATOR_CONFIG = "wavbrivl_generator.json"

ProgressFn = Callable[[int, int], None]


def blend_embeddings(parts: dict[str, tuple[torch.Tensor, float]]) -> torch.Tensor:
    """Weighted mix of unit embeddings (e.g. ``{"audio": (a, 0.7), "text": (t, 0.3)}``), renormalised."""
    total = None
    for name, (emb, weight) in parts.items():
        if weight == 0:
            continue
        v = F.normalize(torch.as_tensor(emb, dtype=torch.float32).reshape(-1, emb.shape[-1]), dim=-1) * float(weight)
        total = v if total is None else total + v
    if total is None:
        raise ValueError("blend_embeddings: every weight is zero")
    return F.normalize(total, dim=-1)


# ============================================================================ the starter pipeline
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline, UNet2DConditionModel  # noqa: E402


class EmbeddingToImagePipeline(DiffusionPipeline):
    """Pixel-space diffusion conditioned on one embedding vector (the offline starter's generator).

    The embedding is projected and added to the timestep embedding (``class_embed_type="projection"``), so
    it steers every block of the UNet. Classifier-free guidance uses the zero vector as the null condition,
    which training shows the model 10 % of the time.

    ``embed_scale`` multiplies the unit embedding before the UNet sees it. A unit vector of dimension d has
    entries of about 1/sqrt(d), far weaker than the sinusoidal timestep features it is added to; scaled by
    sqrt(d) its entries are of order one, and the UNet learns to follow it many times sooner.

    ``guidance_scale`` is the default guidance, stored with the pipeline because the right value depends on
    how it was trained: a noise-predicting UNet needs guidance (about 3) to commit to its condition, while a
    clean-picture-predicting one already does, and guidance above 1 pushes its colours past the data
    (measured on the starter world: consistency 0.54 at guidance 1, 0.40 at 3, 0.04 at 6). A velocity
    predictor sits between the two (starter world: 0.44 at guidance 1, 0.59 at 2, 0.45 at 3).

    ``patch_size`` p > 1 runs the UNet on pixel-unshuffled pictures (p x p pixel blocks folded into channels,
    the "patching" of simple diffusion): the UNet works at 1/p the resolution with p*p times the channels,
    so a network twice as wide costs less per step than a narrow one at full resolution, and the picture comes
    back at full resolution. ``eta`` is the DDIM stochasticity used by default: with eta = 0 an undertrained
    clean-picture predictor follows the average over the rotations it has not yet decided and draws
    rounded blobs, and fresh noise at each step can let it commit to one (a narrow starter generator:
    picture-conditioned consistency 0.36 at eta 0, 0.50 at eta 1 with 50 steps). A better-trained one
    needs no help (the committed starter generator: 0.53 at eta 0, 0.52 at eta 1), so the default is 0.
    """

    def __init__(
        self, unet: UNet2DConditionModel, scheduler: DDIMScheduler, embed_scale: float = 1.0, guidance_scale: float = 3.0,
        patch_size: int = 1, eta: float = 0.0,
    ) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(embed_scale=float(embed_scale), guidance_scale=float(guidance_scale),
                                patch_size=int(patch_size), eta=float(eta))

    @torch.no_grad()
    def __call__(
        self,
        image_embeds: torch.Tensor,
        num_inference_steps: int = 25,
        guidance_scale: float | None = None,
        generator: torch.Generator | None = None,
        callback_on_step_end: Callable[[Any, int, int, dict], dict] | None = None,
        output_type: str = "pil",
        eta: float | None = None,
    ):
        unet = self.unet
        b = image_embeds.shape[0]
        cond = image_embeds.to(unet.device, unet.dtype) * self.config.embed_scale
        size = unet.config.sample_size
        x = torch.randn((b, unet.config.in_channels, size, size), generator=generator, device="cpu").to(unet.device, unet.dtype)
        self.scheduler.set_timesteps(num_inference_steps)
        if guidance_scale is None:
            guidance_scale = self.config.guidance_scale
        step_kwargs: dict[str, Any] = {"generator": generator}
        if isinstance(self.scheduler, DDIMScheduler):
            step_kwargs["eta"] = self.config.eta if eta is None else float(eta)
        guided = guidance_scale > 1.0
        context = torch.cat([torch.zeros_like(cond), cond]) if guided else cond
        for i, t in enumerate(self.scheduler.timesteps):
            inp = torch.cat([x, x]) if guided else x
            eps = unet(inp, t, encoder_hidden_states=context[:, None, :], class_labels=context).sample
            if guided:
                uncond, c = eps.chunk(2)
                eps = uncond + guidance_scale * (c - uncond)
            x = self.scheduler.step(eps, t, x, **step_kwargs).prev_sample
            if callback_on_step_end is not None:
                callback_on_step_end(self, i, t, {})
        if self.config.patch_size > 1:
            x = F.pixel_shuffle(x, self.config.patch_size)
        images = ((x.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        if output_type == "np":
            return images
        return _Output([Image.fromarray(a) for a in images])


class _Output:
    def __init__(self, images: list[Image.Image]) -> None:
        self.images = images


def tiny_unet_config(
    embed_dim: int, sample_size: int = 32, channels: Sequence[int] = (32, 64, 64), film: bool = True, in_channels: int = 3
) -> dict[str, Any]:
    """A small convolutional pixel-space UNet conditioned on an ``embed_dim`` vector.

    Convolution-only on purpose: on a 2-core CPU the cross-attention variant trained 3x slower for no gain
    in this world, whose content (colour, shape, size) is global and enters through the timestep embedding.
    ``film`` makes that embedding scale *and* shift every ResNet block's features (FiLM) instead of only
    shifting them, which lets the condition gate what is drawn rather than only bias it.
    """
    return dict(
        sample_size=sample_size, in_channels=in_channels, out_channels=in_channels, layers_per_block=1,
        block_out_channels=tuple(channels),
        down_block_types=("DownBlock2D",) * len(channels), up_block_types=("UpBlock2D",) * len(channels),
        mid_block_type="UNetMidBlock2D", norm_num_groups=8, cross_attention_dim=embed_dim,
        class_embed_type="projection", projection_class_embeddings_input_dim=embed_dim,
        resnet_time_scale_shift="scale_shift" if film else "default",
    )


def train_embedding_generator(
    images: Sequence[Image.Image],
    embeddings: torch.Tensor,
    *,
    steps: int = 3000,
    batch_size: int = 64,
    lr: float = 3e-4,
    seed: int = 0,
    sample_size: int = 32,
    channels: Sequence[int] = (32, 64, 64),
    null_prob: float = 0.1,
    embed_scale: float | None = None,
    film: bool = True,
    prediction_type: str = "sample",
    patch_size: int = 1,
    ema_decay: float | None = None,
    eta: float = 0.0,
    snr_gamma: float | None = None,
    guidance_scale: float | None = None,
    cond_noise: float = 0.0,
    progress: bool = True,
    log_every: int = 100,
) -> tuple[EmbeddingToImagePipeline, list[float]]:
    """Train :class:`EmbeddingToImagePipeline` on (image, unit embedding) pairs; returns it and the loss curve.

    ``embed_scale`` defaults to sqrt(embedding dimension) (see :class:`EmbeddingToImagePipeline`).
    ``prediction_type="sample"`` trains the UNet to predict the clean picture rather than the noise: on
    flat-coloured scenes and a few CPU minutes of training it gives clean shapes where noise prediction still
    leaves grain and smudges. ``sample_size`` is the picture's side; with ``patch_size`` p the UNet runs at
    ``sample_size / p`` (see :class:`EmbeddingToImagePipeline`). ``ema_decay`` keeps an exponential moving
    average of the weights (with the usual warm-up) and returns it: averaged weights draw cleaner edges
    than the last step's. ``snr_gamma`` weights each noise level by Min-SNR-gamma (Hang et al. 2023): a
    plain clean-picture loss is dominated by the noisiest steps, whose best answer is a blurred average, and
    spends little on the middle steps where edges and corners are decided. ``guidance_scale`` is stored as
    the pipeline's default (None: 1 for clean-picture prediction, 3 otherwise). ``cond_noise`` jitters each
    training condition by a random amount up to that level (see :func:`jitter_condition`), so that the
    generator also reads embeddings that land near, not on, its training pictures', as another modality's do.
    """
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from tqdm.auto import tqdm

    if cond_noise < 0:
        raise ValueError(f"cond_noise must be >= 0, not {cond_noise}")
    if prediction_type not in ("epsilon", "sample", "v_prediction"):
        # Checked before training: the schedulers accept any string and would only fail when sampling.
        raise ValueError(f"prediction_type must be 'epsilon', 'sample' or 'v_prediction', not {prediction_type!r}")
    torch.manual_seed(seed)
    scale = float(np.sqrt(embeddings.shape[1])) if embed_scale is None else float(embed_scale)
    emb = F.normalize(embeddings.float(), dim=-1) * scale
    if patch_size < 1 or sample_size % patch_size:
        raise ValueError(f"patch_size {patch_size} must be >= 1 and divide sample_size {sample_size}")
    pixels = torch.stack([
        torch.from_numpy(np.array(img.convert("RGB").resize((sample_size, sample_size), Image.BICUBIC))).permute(2, 0, 1)
        for img in images
    ]).float() / 127.5 - 1
    if patch_size > 1:
        pixels = F.pixel_unshuffle(pixels, patch_size)
    unet = UNet2DConditionModel(**tiny_unet_config(emb.shape[1], sample_size // patch_size, channels, film=film,
                                                   in_channels=3 * patch_size**2))
    ema = None
    if ema_decay:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(unet.parameters(), decay=ema_decay, use_ema_warmup=True, power=3 / 4)
    noise_sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type)
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.01)
    sched = get_cosine_schedule_with_warmup(opt, max(1, min(100, steps // 10)), steps)
    g = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    unet.train()
    for step in tqdm(range(steps), desc="training generator", disable=not progress):
        idx = torch.randint(0, len(pixels), (batch_size,), generator=g)
        x0, c = pixels[idx], emb[idx].clone()
        if cond_noise > 0:
            c = jitter_condition(c, cond_noise, g)
        c[torch.rand(batch_size, generator=g) < null_prob] = 0
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, 1000, (batch_size,), generator=g)
        xt = noise_sched.add_noise(x0, noise, t)
        pred = unet(xt, t, encoder_hidden_states=c[:, None, :], class_labels=c).sample
        if prediction_type == "epsilon":
            target = noise
        elif prediction_type == "sample":
            target = x0
        else:
            target = noise_sched.get_velocity(x0, noise, t)
        if snr_gamma:
            per_sample = F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))
            loss = (per_sample * _min_snr_weight(noise_sched, t, snr_gamma, prediction_type)).mean()
        else:
            loss = F.mse_loss(pred, target)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step(unet.parameters())
        losses.append(float(loss.detach()))
        if progress and step % log_every == 0:
            log.info("generator step %d loss %.4f", step, np.mean(losses[-log_every:]))
    if ema is not None:
        ema.copy_to(unet.parameters())
    unet.eval()
    ddim = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=True,
                         prediction_type=prediction_type)
    guidance = (1.0 if prediction_type == "sample" else 3.0) if guidance_scale is None else float(guidance_scale)
    pipe = EmbeddingToImagePipeline(unet=unet, scheduler=ddim, embed_scale=scale, guidance_scale=guidance,
                                    patch_size=patch_size, eta=eta)
    return pipe, losses


def jitter_condition(c: torch.Tensor, max_noise: float, generator: torch.Generator) -> torch.Tensor:
    """Condition vectors ``[B, D]`` moved off their points by Gaussian noise of a random level per row.

    Each row keeps its length. Its noise level is uniform in [0, max_noise], relative to that length, so a
    row at level s keeps a cosine of about 1/sqrt(1 + s^2) to where it was (level 1: about 0.71).
    """
    sigma = torch.rand(c.shape[0], 1, generator=generator) * max_noise
    length = c.norm(dim=-1, keepdim=True)
    jitter = torch.randn(c.shape, generator=generator) * sigma / np.sqrt(c.shape[1])
    return F.normalize(c / length.clamp_min(1e-12) + jitter, dim=-1) * length


def _min_snr_weight(scheduler: DDPMScheduler, t: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """Min-SNR-gamma loss weights, normalised to at most 1, for the given prediction target."""
    from diffusers.training_utils import compute_snr

    snr = compute_snr(scheduler, t)
    capped = snr.clamp(max=gamma)
    if prediction_type == "sample":
        return capped / gamma
    if prediction_type == "epsilon":
        return capped / snr
    return capped / (snr + 1)


# ============================================================================ the backend-neutral Generator
class Generator:
    """Embedding -> images, for one embedding space. Loaded once; calls are serialised by a lock."""

    def __init__(self, pipeline: DiffusionPipeline, *, space_id: str, embed_dim: int, embed_norm: float | None = None,
                 source: str = "") -> None:
        self.pipeline = pipeline
        self.space_id = space_id
        self.embed_dim = embed_dim
        self.embed_norm = embed_norm
        self.source = source
        self.kind = type(pipeline).__name__
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike = UNCLIP_MODEL_ID,
        *,
        space_id: str | None = None,
        embed_norm: float | None = None,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        local_files_only: bool | None = None,
        attention_slicing: bool = False,
        vae_tiling: bool = False,
        cpu_offload: bool = False,
    ) -> "Generator":
        """Load a saved pipeline folder or hub id; the backend is read from its ``model_index.json``."""
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = dtype or (torch.float16 if str(device).startswith("cuda") else torch.float32)
        if local_files_only is None:
            local_files_only = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
        path = Path(name_or_path)
        try:
            index = _read_model_index(name_or_path, local_files_only)
        except Exception as exc:
            raise RuntimeError(
                f"could not load generator {str(name_or_path)!r} ({type(exc).__name__}: {exc}). Offline, pass a local "
                "pipeline folder (the starter bundle has one in assets/starter/generator), or pre-download the model "
                "and set HF_HUB_OFFLINE=1."
            ) from None
        class_name = index.get("_class_name")
        extra: dict[str, Any] = {}
        if path.is_dir() and (path / GENERATOR_CONFIG).is_file():
            extra = json.loads((path / GENERATOR_CONFIG).read_text())
        if class_name == "StableUnCLIPImg2ImgPipeline":
            from diffusers import StableUnCLIPImg2ImgPipeline

            pipe = StableUnCLIPImg2ImgPipeline.from_pretrained(str(name_or_path), dtype=dtype, local_files_only=local_files_only)
            dim = int(pipe.image_encoder.config.projection_dim)
            space = space_id or extra.get("space_id") or UNCLIP_SPACE
        elif class_name == EmbeddingToImagePipeline.__name__:
            pipe = EmbeddingToImagePipeline.from_pretrained(str(name_or_path), dtype=dtype)
            dim = int(pipe.unet.config.projection_class_embeddings_input_dim)
            space = space_id or extra.get("space_id")
            if not space:
                raise ValueError(f"{name_or_path}: no {GENERATOR_CONFIG} saying which embedding space this generator consumes")
        else:
            raise ValueError(f"{name_or_path}: unsupported pipeline class {class_name!r}")
        if attention_slicing and hasattr(pipe, "enable_attention_slicing"):
            pipe.enable_attention_slicing()
        if vae_tiling and hasattr(pipe, "enable_vae_tiling"):
            pipe.enable_vae_tiling()
        if cpu_offload and str(device).startswith("cuda"):
            pipe.enable_model_cpu_offload()
        else:
            pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, space_id=space, embed_dim=dim, embed_norm=embed_norm or extra.get("embed_norm"), source=str(name_or_path))

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        self.pipeline.save_pretrained(str(path), safe_serialization=True)
        (path / GENERATOR_CONFIG).write_text(json.dumps(
            {"space_id": self.space_id, "embed_dim": self.embed_dim, "embed_norm": self.embed_norm, "backend": self.kind}, indent=2) + "\n")
        return path

    # ------------------------------------------------------------------ generation
    def check_space(self, space_id: str, dim: int) -> None:
        if space_id != self.space_id or dim != self.embed_dim:
            raise ValueError(
                f"this generator consumes {self.space_id!r} embeddings ({self.embed_dim}-d) but was given "
                f"{space_id!r} ({dim}-d) ones; use a checkpoint trained in {self.space_id!r}"
                + (" (the vit-h-14 preset)" if self.space_id == UNCLIP_SPACE else "")
            )

    def generate(
        self,
        embedding: torch.Tensor,
        *,
        space_id: str,
        seed: int = 0,
        steps: int = 25,
        guidance_scale: float | None = None,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        noise_level: int = 0,
        height: int | None = None,
        width: int | None = None,
        progress: ProgressFn | None = None,
    ) -> list[Image.Image]:
        """Images for unit embedding(s) ``[D]`` or ``[B, D]`` of space ``space_id`` (refused if not this generator's)."""
        emb = torch.as_tensor(embedding, dtype=torch.float32)
        emb = F.normalize(emb.reshape(-1, emb.shape[-1]), dim=-1)
        self.check_space(space_id, emb.shape[1])
        pipe = self.pipeline
        device = pipe.device
        gen = torch.Generator(device="cpu").manual_seed(int(seed))

        def on_step(_pipe, i, _t, kwargs):
            if progress is not None:
                progress(i + 1, steps)
            return kwargs

        with self._lock:  # one pipeline, one caller at a time: concurrent calls queue here
            if self.kind == "StableUnCLIPImg2ImgPipeline":
                scale = self.embed_norm or 1.0
                out = pipe(
                    image_embeds=(emb * scale).to(device, pipe.dtype),
                    prompt=[prompt or ""] * emb.shape[0],
                    negative_prompt=[negative_prompt] * emb.shape[0] if negative_prompt else None,
                    num_inference_steps=steps, guidance_scale=10.0 if guidance_scale is None else guidance_scale,
                    noise_level=noise_level, generator=gen, height=height, width=width,
                    callback=lambda i, _t, _latents: on_step(None, i, _t, {}), callback_steps=1,
                )
            else:
                out = pipe(emb, num_inference_steps=steps, guidance_scale=guidance_scale, generator=gen, callback_on_step_end=on_step)
        return list(out.images)


def _read_model_index(name_or_path: str | os.PathLike, local_files_only: bool) -> dict[str, Any]:
    path = Path(name_or_path)
    if path.is_dir():
        index = path / "model_index.json"
        if not index.is_file():
            raise FileNotFoundError(f"{path}: no model_index.json (not a diffusers pipeline folder)")
        return json.loads(index.read_text())
    if path.exists() or str(name_or_path).count("/") != 1:
        raise FileNotFoundError(f"{name_or_path}: no such pipeline folder (and not a hub id 'org/name')")
    from huggingface_hub import hf_hub_download

    return json.loads(Path(hf_hub_download(str(name_or_path), "model_index.json", local_files_only=local_files_only)).read_text())
