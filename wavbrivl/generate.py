"""Audio-to-image generation: an embedding of the shared space drives a diffusers pipeline.

The audio embedding lives in the frozen image tower's space, so it can stand where an *image* embedding goes
in an image-embedding-conditioned diffusion model. :class:`Generator` is the one object callers use; what
differs between kinds of pipeline (how to load it, whether it needs a GPU, whether it takes a text prompt,
its default steps and guidance, how to call it) is a :class:`GeneratorBackend`, chosen from the pipeline's
``model_index.json``:

* :class:`UnCLIPBackend`: ``StableUnCLIPImg2ImgPipeline`` (Stable unCLIP 2.1; repo candidates in ``generators.json``), which
  consumes OpenCLIP ViT-H-14 (``laion2b_s32b_b79k``) image embeddings: pair it with the ``vit-h-14`` preset.
* :class:`EmbeddingToImageBackend`: :class:`~wavbrivl.embedding_to_image.EmbeddingToImagePipeline`, the small
  pixel-space pipeline bundles train for themselves; it runs on a CPU.
* :class:`IPAdapterBackend`: Stable Diffusion 1.5 with IP-Adapter (``h94/IP-Adapter``), which also consumes the
  global OpenCLIP ViT-H-14 image embedding, optionally with LCM-LoRA for ~4-step sampling (a CPU can paint).
  It is built from hub parts named by a :class:`~wavbrivl.hub.GeneratorSource` (:meth:`Generator.from_source`),
  not from one folder, so it has no ``model_index.json`` class of its own.

Why unCLIP embeddings are rescaled: the audio encoder outputs unit vectors (only direction carries meaning in
a cosine space), but unCLIP was trained on *raw* projected image embeddings whose norm is far from 1 (about
15-20 for ViT-H-14); a unit vector would look like an almost blank image embedding. The direction is
rescaled to the mean raw image-embedding norm recorded in the checkpoint (``config.image_embed_norm``). The
same holds for IP-Adapter, whose projection was trained on the raw embeddings of the same image encoder.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from PIL import Image

from .hub import GeneratorSource, offline, resolve_source

log = logging.getLogger(__name__)

UNCLIP_SPACE = "ViT-H-14/laion2b_s32b_b79k"
GENERATOR_CONFIG = "wavbrivl_generator.json"

ProgressFn = Callable[[int, int], None]


def raw_scale(emb: torch.Tensor, embed_norm: float | None) -> torch.Tensor:
    """Unit embeddings at the length the generator was trained on (see the module docstring); None: as is."""
    return emb * (embed_norm or 1.0)


def blend_embeddings(parts: dict[str, tuple[torch.Tensor, float]]) -> torch.Tensor:
    """Weighted mix of unit embeddings (e.g. ``{"audio": (a, 0.7), "text": (t, 0.3)}``), renormalised."""
    total = None
    for emb, weight in parts.values():
        if weight == 0:
            continue
        v = F.normalize(torch.as_tensor(emb, dtype=torch.float32).reshape(-1, emb.shape[-1]), dim=-1) * float(weight)
        total = v if total is None else total + v
    if total is None:
        raise ValueError("blend_embeddings: every weight is zero")
    return F.normalize(total, dim=-1)


# ============================================================================ backends
class GeneratorBackend(ABC):
    """What one kind of diffusers pipeline needs: how to load it, what it costs, how to call it."""

    pipeline_class: str = ""
    needs_gpu: bool = False  # unusable on a CPU (minutes per image): callers switch generation off instead
    takes_text_prompt: bool = False  # the pipeline reads a text prompt besides the embedding
    default_steps: int = 25
    default_guidance: float | None = None  # None: the default stored with the pipeline

    @abstractmethod
    def load(self, source: str, *, dtype: torch.dtype, local_files_only: bool) -> Any: ...

    @abstractmethod
    def embed_dim(self, pipe: Any) -> int: ...

    def default_space(self) -> str | None:
        """The embedding space a pipeline of this kind consumes when its folder does not say."""
        return None

    @abstractmethod
    def run(self, pipe: Any, emb: torch.Tensor, *, embed_norm: float | None, prompt: str | None,
            negative_prompt: str | None, steps: int, guidance_scale: float | None, noise_level: int,
            generator: torch.Generator, height: int | None, width: int | None,
            on_step: Callable[[int], None]) -> list[Image.Image]: ...


class UnCLIPBackend(GeneratorBackend):
    pipeline_class = "StableUnCLIPImg2ImgPipeline"
    needs_gpu = True  # a 2.1 GB UNet at 768 px: minutes per image and ~10 GB of memory on a CPU
    takes_text_prompt = True
    default_guidance = 10.0

    def load(self, source: str, *, dtype: torch.dtype, local_files_only: bool) -> Any:
        from diffusers import StableUnCLIPImg2ImgPipeline

        return StableUnCLIPImg2ImgPipeline.from_pretrained(source, dtype=dtype, local_files_only=local_files_only)

    def embed_dim(self, pipe: Any) -> int:
        return int(pipe.image_encoder.config.projection_dim)

    def default_space(self) -> str | None:
        return UNCLIP_SPACE

    def run(self, pipe, emb, *, embed_norm, prompt, negative_prompt, steps, guidance_scale, noise_level, generator,
            height, width, on_step):
        n = emb.shape[0]
        out = pipe(
            image_embeds=raw_scale(emb, embed_norm).to(pipe.device, pipe.dtype),
            prompt=[prompt or ""] * n, negative_prompt=[negative_prompt] * n if negative_prompt else None,
            num_inference_steps=steps, guidance_scale=self.default_guidance if guidance_scale is None else guidance_scale,
            noise_level=noise_level, generator=generator, height=height, width=width,
            callback=lambda i, _t, _latents: on_step(i), callback_steps=1,
        )
        return list(out.images)


class EmbeddingToImageBackend(GeneratorBackend):
    pipeline_class = "EmbeddingToImagePipeline"

    def load(self, source: str, *, dtype: torch.dtype, local_files_only: bool) -> Any:
        from .embedding_to_image import EmbeddingToImagePipeline

        return EmbeddingToImagePipeline.from_pretrained(source, dtype=dtype)

    def embed_dim(self, pipe: Any) -> int:
        return int(pipe.unet.config.projection_class_embeddings_input_dim)

    def run(self, pipe, emb, *, embed_norm, prompt, negative_prompt, steps, guidance_scale, noise_level, generator,
            height, width, on_step):
        def callback(_pipe: Any, i: int, _t: Any, kwargs: dict) -> dict:
            on_step(i)
            return kwargs

        return list(pipe(emb, num_inference_steps=steps, guidance_scale=guidance_scale, generator=generator,
                         callback_on_step_end=callback).images)


class IPAdapterBackend(GeneratorBackend):
    """Stable Diffusion 1.5 + IP-Adapter, the sound embedding passed as ``ip_adapter_image_embeds``.

    Under classifier-free guidance diffusers splits each embeddings tensor with ``chunk(2)`` into negative then
    positive (``prepare_ip_adapter_image_embeds``), and its own image path uses zeros as the negative image
    embedding for this adapter kind, so the tensor is ``[zeros; e]`` of shape ``(2, 1, D)``; without guidance it
    is ``(1, 1, D)``. Whether guidance is on is the pipeline's rule: ``guidance_scale > 1`` and a UNet without
    ``time_cond_proj_dim``. The pipeline repeats the tensor for every prompt of the batch, so a batch of
    different sounds is painted one call per sound.

    With ``lcm_lora`` the LCM-LoRA weights are fused into the UNet and the scheduler becomes ``LCMScheduler``:
    4 steps at guidance 1 (no guidance, one UNet pass per step), which a CPU can afford.
    """

    pipeline_class = "StableDiffusionPipeline"
    takes_text_prompt = True

    def __init__(self, adapter: str | os.PathLike, *, lcm_lora: str | os.PathLike | None = None, scale: float = 1.0) -> None:
        self.adapter = Path(adapter)
        self.lcm_lora = Path(lcm_lora) if lcm_lora else None
        self.scale = scale
        self.needs_gpu = self.lcm_lora is None  # 25 guided steps of a 860 M UNet: minutes per image on a CPU
        self.default_steps = 4 if self.lcm_lora else 25
        self.default_guidance = 1.0 if self.lcm_lora else 7.5

    def load(self, source: str, *, dtype: torch.dtype, local_files_only: bool) -> Any:
        from diffusers import LCMScheduler, StableDiffusionPipeline

        pipe = StableDiffusionPipeline.from_pretrained(source, dtype=dtype, local_files_only=True)
        # The embeddings come precomputed: no image encoder is needed (image_encoder_folder=None).
        pipe.load_ip_adapter(str(self.adapter.parent), subfolder="", weight_name=self.adapter.name, image_encoder_folder=None,
                             local_files_only=True)
        pipe.set_ip_adapter_scale(self.scale)
        if self.lcm_lora is not None:
            from diffusers.utils import USE_PEFT_BACKEND

            if not USE_PEFT_BACKEND:
                raise RuntimeError("the LCM-LoRA few-step mode needs peft (pip install peft; it is in requirements.txt); "
                                   "the IP-Adapter source without LCM (ip-adapter-sd15) does not")
            pipe.load_lora_weights(str(self.lcm_lora.parent), weight_name=self.lcm_lora.name, adapter_name="lcm")
            pipe.fuse_lora()
            pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)
        return pipe

    def embed_dim(self, pipe: Any) -> int:
        return int(pipe.unet.encoder_hid_proj.image_projection_layers[0].image_embeds.in_features)

    def default_space(self) -> str | None:
        return UNCLIP_SPACE

    def run(self, pipe, emb, *, embed_norm, prompt, negative_prompt, steps, guidance_scale, noise_level, generator,
            height, width, on_step):
        guidance = self.default_guidance if guidance_scale is None else guidance_scale
        guided = guidance > 1 and pipe.unet.config.time_cond_proj_dim is None

        def callback(_pipe: Any, i: int, _t: Any, kwargs: dict) -> dict:
            on_step(i)
            return kwargs

        images = []
        for row in raw_scale(emb, embed_norm):
            e = row.reshape(1, 1, -1)
            embeds = torch.cat([torch.zeros_like(e), e]) if guided else e
            out = pipe(prompt=prompt or "", negative_prompt=negative_prompt if guided else None,
                       ip_adapter_image_embeds=[embeds.to(pipe.device, pipe.dtype)], num_inference_steps=steps,
                       guidance_scale=guidance, generator=generator, height=height, width=width,
                       callback_on_step_end=callback)
            images.extend(out.images)
        return images


BACKENDS: dict[str, GeneratorBackend] = {b.pipeline_class: b for b in (UnCLIPBackend(), EmbeddingToImageBackend())}


def read_model_index(name_or_path: str | os.PathLike, local_files_only: bool | None = None) -> dict[str, Any]:
    """A diffusers pipeline's ``model_index.json``, from a folder or (cached) from the Hub."""
    path = Path(name_or_path)
    if path.is_dir():
        index = path / "model_index.json"
        if not index.is_file():
            raise FileNotFoundError(f"{path}: no model_index.json (not a diffusers pipeline folder)")
        return json.loads(index.read_text())
    if path.exists() or str(name_or_path).count("/") != 1:
        raise FileNotFoundError(f"{name_or_path}: no such pipeline folder (and not a hub id 'org/name')")
    from huggingface_hub import hf_hub_download

    local = offline() if local_files_only is None else local_files_only
    return json.loads(Path(hf_hub_download(str(name_or_path), "model_index.json", local_files_only=local)).read_text())


def backend_for(name_or_path: str | os.PathLike, local_files_only: bool | None = None) -> GeneratorBackend:
    """The backend that drives this pipeline (read from its ``model_index.json``, nothing else loaded)."""
    try:
        index = read_model_index(name_or_path, local_files_only)
    except Exception as exc:
        raise RuntimeError(
            f"could not load generator {str(name_or_path)!r} ({type(exc).__name__}: {exc}). Offline, pass a local "
            "pipeline folder (the shapes bundle has one in assets/shapes/generator), or pre-download the model "
            "and set HF_HUB_OFFLINE=1."
        ) from None
    class_name = index.get("_class_name")
    if class_name not in BACKENDS:
        raise ValueError(f"{name_or_path}: unsupported pipeline class {class_name!r} (supported: {', '.join(BACKENDS)})")
    return BACKENDS[class_name]


# ============================================================================ the Generator
class Generator:
    """Embedding -> images, for one embedding space. Loaded once; calls are serialised by a lock."""

    def __init__(self, pipeline: Any, *, space_id: str, embed_dim: int, embed_norm: float | None = None,
                 source: str = "", backend: GeneratorBackend | None = None) -> None:
        self.pipeline = pipeline
        self.backend = backend or BACKENDS[type(pipeline).__name__]
        self.space_id = space_id
        self.embed_dim = embed_dim
        self.embed_norm = embed_norm
        self.source = source
        self.origin: GeneratorSource | None = None  # set when built from hub parts: saved as a reference, not copied
        self._lock = threading.Lock()

    @property
    def kind(self) -> str:
        return self.backend.pipeline_class

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
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
        local = offline() if local_files_only is None else local_files_only
        backend = backend_for(name_or_path, local)
        path = Path(name_or_path)
        extra: dict[str, Any] = {}
        if path.is_dir() and (path / GENERATOR_CONFIG).is_file():
            extra = json.loads((path / GENERATOR_CONFIG).read_text())
        space = space_id or extra.get("space_id") or backend.default_space()
        if not space:
            raise ValueError(f"{name_or_path}: no {GENERATOR_CONFIG} saying which embedding space this generator consumes")
        pipe = _placed(backend.load(str(name_or_path), dtype=dtype, local_files_only=local), device,
                       attention_slicing=attention_slicing, vae_tiling=vae_tiling, cpu_offload=cpu_offload)
        return cls(pipe, space_id=space, embed_dim=backend.embed_dim(pipe), embed_norm=embed_norm or extra.get("embed_norm"),
                   source=str(name_or_path), backend=backend)

    @classmethod
    def from_source(
        cls,
        source: GeneratorSource,
        *,
        embed_norm: float | None = None,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        local_files_only: bool | None = None,
        **placement: bool,
    ) -> "Generator":
        """A generator built from hub parts (see :mod:`wavbrivl.hub`): the first candidate repo that exists, its
        adapter and LCM-LoRA weights, all checked; ``source`` on the result says which repos were used.
        ``placement``: ``attention_slicing``, ``vae_tiling``, ``cpu_offload`` as in :meth:`from_pretrained`."""
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = dtype or (torch.float16 if str(device).startswith("cuda") else torch.float32)
        resolved = resolve_source(source, local_files_only=local_files_only)
        if source.kind == "ip-adapter":
            backend: GeneratorBackend = IPAdapterBackend(resolved.adapter, lcm_lora=resolved.lcm_lora, scale=source.adapter_scale)
        else:
            backend = UnCLIPBackend()
        pipe = _placed(backend.load(str(resolved.folder), dtype=dtype, local_files_only=True), device, **placement)
        log.info("generator %r: using %s", source.name, resolved.describe())
        generator = cls(pipe, space_id=source.space_id, embed_dim=backend.embed_dim(pipe), embed_norm=embed_norm,
                        source=resolved.describe(), backend=backend)
        generator.origin = source
        return generator

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        if self.origin is not None:
            raise ValueError(f"generator {self.origin.name!r} is made of hub parts ({self.source}); a bundle names it in "
                             "its card (hub.generators) instead of copying gigabytes")
        path = Path(path)
        self.pipeline.save_pretrained(str(path), safe_serialization=True)
        (path / GENERATOR_CONFIG).write_text(json.dumps(
            {"space_id": self.space_id, "embed_dim": self.embed_dim, "embed_norm": self.embed_norm, "backend": self.kind},
            indent=2) + "\n")
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
        steps: int | None = None,
        guidance_scale: float | None = None,
        prompt: str | None = None,
        negative_prompt: str | None = None,
        noise_level: int = 0,
        height: int | None = None,
        width: int | None = None,
        progress: ProgressFn | None = None,
    ) -> list[Image.Image]:
        """Images for unit embedding(s) ``[D]`` or ``[B, D]`` of space ``space_id`` (refused if not this generator's).

        ``steps`` / ``guidance_scale`` None mean the backend's defaults; ``prompt`` reaches only backends that
        read text (``backend.takes_text_prompt``).
        """
        emb = torch.as_tensor(embedding, dtype=torch.float32)
        emb = F.normalize(emb.reshape(-1, emb.shape[-1]), dim=-1)
        self.check_space(space_id, emb.shape[1])
        steps = int(steps or self.backend.default_steps)
        gen = torch.Generator(device="cpu").manual_seed(int(seed))

        def on_step(i: int) -> None:
            if progress is not None:
                progress(i + 1, steps)

        text = prompt if self.backend.takes_text_prompt else None
        with self._lock:  # one pipeline, one caller at a time: concurrent calls queue here
            return self.backend.run(
                self.pipeline, emb, embed_norm=self.embed_norm, prompt=text,
                negative_prompt=negative_prompt if self.backend.takes_text_prompt else None, steps=steps,
                guidance_scale=guidance_scale, noise_level=noise_level, generator=gen, height=height, width=width,
                on_step=on_step,
            )


def _placed(pipe: Any, device: str, *, attention_slicing: bool = False, vae_tiling: bool = False,
            cpu_offload: bool = False) -> Any:
    """The pipeline on its device, with the memory savers asked for, and without its own progress bars."""
    if attention_slicing and hasattr(pipe, "enable_attention_slicing"):
        pipe.enable_attention_slicing()
    if vae_tiling and hasattr(pipe, "enable_vae_tiling"):
        pipe.enable_vae_tiling()
    if cpu_offload and str(device).startswith("cuda"):
        pipe.enable_model_cpu_offload()
    else:
        pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe
