"""A small diffusers pipeline that paints a picture from one embedding vector, and its trainer.

It is the CPU-sized counterpart of Stable unCLIP: a pixel-space ``UNet2DConditionModel`` whose condition is
an embedding of the shared space (image, text or audio: they are interchangeable there). A bundle trains one
on its own pictures (see the worlds under :mod:`wavbrivl.worlds`); this module holds the pipeline class, which
any bundle can load, and the training loop, whose settings are a :class:`EmbeddingToImageTrainConfig` that
each world fills in with its own recipe.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, DiffusionPipeline, UNet2DConditionModel
from PIL import Image

from . import optim

log = logging.getLogger(__name__)

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


class EmbeddingToImagePipeline(DiffusionPipeline):
    """Pixel-space diffusion conditioned on one embedding vector.

    The embedding is projected and added to the timestep embedding (``class_embed_type="projection"``), so
    it steers every block of the UNet. Classifier-free guidance uses the zero vector as the null condition,
    which training shows the model ``null_prob`` of the time.

    ``embed_scale`` multiplies the unit embedding before the UNet sees it: a unit vector of dimension d has
    entries of about 1/sqrt(d), far weaker than the sinusoidal timestep features it is added to; scaled by
    sqrt(d) they are of order one and the UNet learns to follow them many times sooner.

    ``guidance_scale`` and ``eta`` are the defaults used when a call does not set them, stored with the
    pipeline because the right values depend on how it was trained (what the UNet predicts: guiding a
    clean-picture predictor overshoots its colours, a noise predictor needs guidance to commit).

    ``patch_size`` p > 1 runs the UNet on pixel-unshuffled pictures (p x p pixel blocks folded into channels,
    the "patching" of simple diffusion): the UNet works at 1/p the resolution with p*p times the channels,
    so a wider network costs less per step, and the picture comes back at full resolution.
    """

    def __init__(
        self, unet: UNet2DConditionModel, scheduler: DDIMScheduler, embed_scale: float = 1.0, guidance_scale: float = 3.0,
        patch_size: int = 1, eta: float = 0.0, retrieval_strength: float = 0.0,
    ) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        self.register_to_config(embed_scale=float(embed_scale), guidance_scale=float(guidance_scale),
                                patch_size=int(patch_size), eta=float(eta), retrieval_strength=float(retrieval_strength))
        self.references: References | None = None
        self.use_references = True

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
        retrieval_strength: float | None = None,
    ):
        """Pictures for unit embeddings ``[B, D]``.

        With references (:meth:`set_references`) and a ``retrieval_strength`` s > 0 (default: the pipeline's
        config, and only while ``use_references`` is on), each picture starts from the reference drawing whose
        embedding is nearest the condition, noised to the level a fraction s through the schedule, and only the
        last s of the steps run (SDEdit on a retrieved drawing, as retrieval-augmented diffusion does: RDM,
        KNN-Diffusion): a small generator keeps a real drawing's structure instead of inventing one, and the
        condition still decides what it is repainted into. s = 1 is plain generation.
        """
        unet = self.unet
        b = image_embeds.shape[0]
        cond = image_embeds.to(unet.device, unet.dtype) * self.config.embed_scale
        size = unet.config.sample_size
        x = torch.randn((b, unet.config.in_channels, size, size), generator=generator, device="cpu").to(unet.device, unet.dtype)
        self.scheduler.set_timesteps(num_inference_steps)
        timesteps = self.scheduler.timesteps
        strength = self.config.get("retrieval_strength", 0.0) if retrieval_strength is None else float(retrieval_strength)
        if self.references is not None and self.use_references and 0 < strength < 1:
            start = min(len(timesteps) - 1, int(round(len(timesteps) * (1 - strength))))
            timesteps = timesteps[start:]
            init = self.references.nearest(image_embeds.float().cpu())
            if self.config.patch_size > 1:
                init = F.pixel_unshuffle(init, self.config.patch_size)
            x = self.scheduler.add_noise(init.to(x.device, x.dtype), x, timesteps[:1].repeat(b))
        if guidance_scale is None:
            guidance_scale = self.config.guidance_scale
        step_kwargs: dict[str, Any] = {"generator": generator}
        if isinstance(self.scheduler, DDIMScheduler):
            step_kwargs["eta"] = self.config.eta if eta is None else float(eta)
        guided = guidance_scale > 1.0
        context = torch.cat([torch.zeros_like(cond), cond]) if guided else cond
        for i, t in enumerate(timesteps):
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
        return ImageOutput([Image.fromarray(a) for a in images])


    def set_references(self, pixels: torch.Tensor, embeddings: torch.Tensor, strength: float | None = None) -> None:
        """Drawings ``[N, 3, S, S]`` (uint8, at the pipeline's picture size) and their embeddings ``[N, D]`` to
        start pictures from (see :meth:`__call__`); ``strength`` also sets the default retrieval strength."""
        self.references = References(pixels, embeddings)
        if strength is not None:
            self.register_to_config(retrieval_strength=float(strength))

    def save_pretrained(self, save_directory, *args, **kwargs) -> None:
        super().save_pretrained(save_directory, *args, **kwargs)
        if self.references is not None:
            self.references.save(Path(save_directory))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        pipe = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        folder = Path(pretrained_model_name_or_path)
        if References.exists(folder):
            pipe.references = References.load(folder)
        return pipe


class References:
    """The drawings a pipeline may start from, with their embeddings: one PNG sheet (drawings compress far better
    as a picture than as raw pixels) and a safetensors file of fp16 embeddings."""

    SHEET, EMBEDS = "references.png", "references.safetensors"

    def __init__(self, pixels: torch.Tensor, embeddings: torch.Tensor) -> None:
        if pixels.dtype != torch.uint8 or pixels.ndim != 4 or pixels.shape[1] != 3:
            raise ValueError(f"references must be uint8 [N, 3, S, S] pictures, not {tuple(pixels.shape)} {pixels.dtype}")
        if len(pixels) != len(embeddings):
            raise ValueError(f"{len(pixels)} reference pictures but {len(embeddings)} embeddings")
        self.pixels = pixels
        self.embeddings = F.normalize(embeddings.float(), dim=-1)

    def nearest(self, queries: torch.Tensor) -> torch.Tensor:
        """For each query embedding ``[B, D]``, the reference drawing nearest it (cosine), in [-1, 1]."""
        best = (F.normalize(queries.float(), dim=-1) @ self.embeddings.T).argmax(dim=1)
        return self.pixels[best].float() / 127.5 - 1

    @classmethod
    def exists(cls, folder: Path) -> bool:
        return (folder / cls.SHEET).is_file() and (folder / cls.EMBEDS).is_file()

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        n, _, size, _ = self.pixels.shape
        cols = int(np.ceil(np.sqrt(n)))
        rows = int(np.ceil(n / cols))
        sheet = torch.full((3, rows * size, cols * size), 255, dtype=torch.uint8)
        for i, p in enumerate(self.pixels):
            r, c = divmod(i, cols)
            sheet[:, r * size:(r + 1) * size, c * size:(c + 1) * size] = p
        Image.fromarray(sheet.permute(1, 2, 0).numpy()).save(folder / self.SHEET, optimize=True)
        save_file({"embeddings": self.embeddings.half().contiguous()}, str(folder / self.EMBEDS),
                  metadata={"count": str(n), "size": str(size), "cols": str(cols)})

    @classmethod
    def load(cls, folder: Path) -> "References":
        from safetensors import safe_open

        with safe_open(str(folder / cls.EMBEDS), framework="pt") as f:
            meta = f.metadata()
            embeddings = f.get_tensor("embeddings").float()
        n, size, cols = int(meta["count"]), int(meta["size"]), int(meta["cols"])
        sheet = torch.from_numpy(np.asarray(Image.open(folder / cls.SHEET).convert("RGB")).copy()).permute(2, 0, 1)
        pixels = torch.stack([sheet[:, (i // cols) * size:(i // cols + 1) * size, (i % cols) * size:(i % cols + 1) * size]
                              for i in range(n)])
        return cls(pixels.contiguous(), embeddings)


@dataclass
class ImageOutput:
    images: list[Image.Image]


def tiny_unet_config(
    embed_dim: int, sample_size: int = 32, channels: Sequence[int] = (32, 64, 64), film: bool = True, in_channels: int = 3
) -> dict[str, Any]:
    """A small convolutional pixel-space UNet conditioned on an ``embed_dim`` vector.

    Convolution-only: on a 2-core CPU the cross-attention variant trains several times slower, and a single
    embedding vector reaches every block through the timestep embedding anyway. ``film`` makes that embedding
    scale *and* shift every ResNet block's features (FiLM) instead of only shifting them, so the condition
    can gate what is drawn rather than only bias it.
    """
    return dict(
        sample_size=sample_size, in_channels=in_channels, out_channels=in_channels, layers_per_block=1,
        block_out_channels=tuple(channels),
        down_block_types=("DownBlock2D",) * len(channels), up_block_types=("UpBlock2D",) * len(channels),
        mid_block_type="UNetMidBlock2D", norm_num_groups=8, cross_attention_dim=embed_dim,
        class_embed_type="projection", projection_class_embeddings_input_dim=embed_dim,
        resnet_time_scale_shift="scale_shift" if film else "default",
    )


@dataclass
class EmbeddingToImageTrainConfig:
    """How :func:`train_embedding_to_image` trains; a world's recipe is one instance of this.

    * ``sample_size``: the picture's side in pixels; with ``patch_size`` p the UNet runs at ``sample_size / p``.
    * ``prediction_type``: what the UNet predicts ("epsilon", "sample" = the clean picture, "v_prediction").
    * ``embed_scale``: None means sqrt(embedding dimension) (see :class:`EmbeddingToImagePipeline`).
    * ``ema_decay``: return an exponential moving average of the weights (averaged weights draw cleaner edges).
    * ``snr_gamma``: weight each noise level by Min-SNR-gamma (Hang et al. 2023).
    * ``guidance_scale``: the pipeline's stored default (None: 1 for clean-picture prediction, 3 otherwise).
    * ``cond_noise``: jitter each training condition by a random amount up to this level
      (:func:`jitter_condition`), so the generator also reads embeddings that land near, not on, its
      pictures' embeddings, as another modality's do (Stable unCLIP noises its image embeddings the same way).
    """

    steps: int = 3000
    batch_size: int = 64
    lr: float = 3e-4
    seed: int = 0
    sample_size: int = 32
    channels: tuple[int, ...] = (32, 64, 64)
    null_prob: float = 0.1
    embed_scale: float | None = None
    film: bool = True
    prediction_type: str = "sample"
    patch_size: int = 1
    ema_decay: float | None = None
    eta: float = 0.0
    snr_gamma: float | None = None
    guidance_scale: float | None = None
    cond_noise: float = 0.0
    progress: bool = True
    log_every: int = 100

    def __post_init__(self) -> None:
        # Checked before training: the schedulers accept any string and would only fail when sampling.
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {', '.join(PREDICTION_TYPES)}, not {self.prediction_type!r}")
        if self.cond_noise < 0:
            raise ValueError(f"cond_noise must be >= 0, not {self.cond_noise}")
        if self.patch_size < 1 or self.sample_size % self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} must be >= 1 and divide sample_size {self.sample_size}")
        self.channels = tuple(self.channels)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def train_embedding_to_image(
    images: Sequence[Image.Image], embeddings: torch.Tensor, config: EmbeddingToImageTrainConfig | None = None
) -> tuple[EmbeddingToImagePipeline, list[float]]:
    """Train an :class:`EmbeddingToImagePipeline` on (picture, embedding) pairs; returns it and the loss curve."""
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from tqdm.auto import tqdm

    cfg = config or EmbeddingToImageTrainConfig()
    torch.manual_seed(cfg.seed)
    scale = float(np.sqrt(embeddings.shape[1])) if cfg.embed_scale is None else float(cfg.embed_scale)
    emb = F.normalize(embeddings.float(), dim=-1) * scale
    pixels = torch.stack([
        torch.from_numpy(np.array(img.convert("RGB").resize((cfg.sample_size, cfg.sample_size), Image.BICUBIC))).permute(2, 0, 1)
        for img in images
    ]).float() / 127.5 - 1
    if cfg.patch_size > 1:
        pixels = F.pixel_unshuffle(pixels, cfg.patch_size)
    unet = UNet2DConditionModel(**tiny_unet_config(emb.shape[1], cfg.sample_size // cfg.patch_size, cfg.channels,
                                                   film=cfg.film, in_channels=3 * cfg.patch_size**2))
    ema = None
    if cfg.ema_decay:
        from diffusers.training_utils import EMAModel

        ema = EMAModel(unet.parameters(), decay=cfg.ema_decay, use_ema_warmup=True, power=3 / 4)
    noise_sched = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type=cfg.prediction_type)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = get_cosine_schedule_with_warmup(opt, max(1, min(100, cfg.steps // 10)), cfg.steps)
    g = torch.Generator().manual_seed(cfg.seed)
    losses: list[float] = []
    unet.train()
    for step in tqdm(range(cfg.steps), desc="training generator", disable=not cfg.progress):
        idx = torch.randint(0, len(pixels), (cfg.batch_size,), generator=g)
        x0, c = pixels[idx], emb[idx].clone()
        if cfg.cond_noise > 0:  # guarded so that runs without jitter keep their random stream
            c = jitter_condition(c, cfg.cond_noise, g)
        c[torch.rand(cfg.batch_size, generator=g) < cfg.null_prob] = 0
        noise = torch.randn(x0.shape, generator=g)
        t = torch.randint(0, 1000, (cfg.batch_size,), generator=g)
        xt = noise_sched.add_noise(x0, noise, t)
        pred = unet(xt, t, encoder_hidden_states=c[:, None, :], class_labels=c).sample
        if cfg.prediction_type == "epsilon":
            target = noise
        elif cfg.prediction_type == "sample":
            target = x0
        else:
            target = noise_sched.get_velocity(x0, noise, t)
        if cfg.snr_gamma:
            per_sample = F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))
            loss = (per_sample * min_snr_weight(noise_sched, t, cfg.snr_gamma, cfg.prediction_type)).mean()
        else:
            loss = F.mse_loss(pred, target)
        losses.append(optim.step(loss, opt, sched, clip=(unet.parameters(), 1.0)))
        if ema is not None:
            ema.step(unet.parameters())
        if cfg.progress and step % cfg.log_every == 0:
            log.info("generator step %d loss %.4f", step, np.mean(losses[-cfg.log_every:]))
    if ema is not None:
        ema.copy_to(unet.parameters())
    unet.eval()
    ddim = DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", clip_sample=True,
                         prediction_type=cfg.prediction_type)
    guidance = (1.0 if cfg.prediction_type == "sample" else 3.0) if cfg.guidance_scale is None else float(cfg.guidance_scale)
    pipe = EmbeddingToImagePipeline(unet=unet, scheduler=ddim, embed_scale=scale, guidance_scale=guidance,
                                    patch_size=cfg.patch_size, eta=cfg.eta)
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


def min_snr_weight(scheduler: DDPMScheduler, t: torch.Tensor, gamma: float, prediction_type: str) -> torch.Tensor:
    """Min-SNR-gamma loss weights, normalised to at most 1, for the given prediction target."""
    from diffusers.training_utils import compute_snr

    snr = compute_snr(scheduler, t)
    capped = snr.clamp(max=gamma)
    if prediction_type == "sample":
        return capped / gamma
    if prediction_type == "epsilon":
        return capped / snr
    return capped / (snr + 1)
