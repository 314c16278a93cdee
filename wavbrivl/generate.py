"""Audio-to-image generation: an embedding of the shared space drives a diffusers pipeline.

The audio embedding lives in the frozen image tower's space, so it can stand where an *image* embedding goes
in an image-embedding-conditioned diffusion model. :class:`Generator` is the one object callers use; what
differs between kinds of pipeline (how to load it, whether it needs a GPU, whether it takes a text prompt,
its default steps and guidance, how to call it) is a :class:`GeneratorBackend`, chosen from the pipeline's
``model_index.json``:

* :class:`UnCLIPBackend`: ``StableUnCLIPImg2ImgPipeline`` (``stabilityai/stable-diffusion-2-1-unclip``), which
  consumes OpenCLIP ViT-H-14 (``laion2b_s32b_b79k``) image embeddings: pair it with the ``vit-h-14`` preset.
* :class:`EmbeddingToImageBackend`: :class:`~wavbrivl.embedding_to_image.EmbeddingToImagePipeline`, the small
  pixel-space pipeline bundles train for themselves; it runs on a CPU.

Why unCLIP embeddings are rescaled: the audio encoder outputs unit vectors (only direction carries meaning in
a cosine space), but unCLIP was trained on *raw* projected image embeddings whose norm is far from 1 (about
15-20 for ViT-H-14); a unit vector would look like an almost blank image embedding. The direction is
rescaled to the mean raw image-embedding norm recorded in the checkpoint (``config.image_embed_norm``).
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

log = logging.getLogger(__name__)

UNCLIP_MODEL_ID = "stabilityai/stable-diffusion-2-1-unclip"
UNCLIP_SPACE = "ViT-H-14/laion2b_s32b_b79k"
GENERATOR_CONFIG = "wavbrivl_generator.json"

ProgressFn = Callable[[int, int], None]


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
            image_embeds=(emb * (embed_norm or 1.0)).to(pipe.device, pipe.dtype),
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


BACKENDS: dict[str, GeneratorBackend] = {b.pipeline_class: b for b in (UnCLIPBackend(), EmbeddingToImageBackend())}


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


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

    local = _offline() if local_files_only is None else local_files_only
    return json.loads(Path(hf_hub_download(str(name_or_path), "model_index.json", local_files_only=local)).read_text())


def backend_for(name_or_path: str | os.PathLike, local_files_only: bool | None = None) -> GeneratorBackend:
    """The backend that drives this pipeline (read from its ``model_index.json``, nothing else loaded)."""
    try:
        index = read_model_index(name_or_path, local_files_only)
    except Exception as exc:
        raise RuntimeError(
            f"could not load generator {str(name_or_path)!r} ({type(exc).__name__}: {exc}). Offline, pass a local "
            "pipeline folder (the starter bundle has one in assets/starter/generator), or pre-download the model "
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
        self._lock = threading.Lock()

    @property
    def kind(self) -> str:
        return self.backend.pipeline_class

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
        local = _offline() if local_files_only is None else local_files_only
        backend = backend_for(name_or_path, local)
        path = Path(name_or_path)
        extra: dict[str, Any] = {}
        if path.is_dir() and (path / GENERATOR_CONFIG).is_file():
            extra = json.loads((path / GENERATOR_CONFIG).read_text())
        space = space_id or extra.get("space_id") or backend.default_space()
        if not space:
            raise ValueError(f"{name_or_path}: no {GENERATOR_CONFIG} saying which embedding space this generator consumes")
        pipe = backend.load(str(name_or_path), dtype=dtype, local_files_only=local)
        if attention_slicing and hasattr(pipe, "enable_attention_slicing"):
            pipe.enable_attention_slicing()
        if vae_tiling and hasattr(pipe, "enable_vae_tiling"):
            pipe.enable_vae_tiling()
        if cpu_offload and str(device).startswith("cuda"):
            pipe.enable_model_cpu_offload()
        else:
            pipe.to(device)
        pipe.set_progress_bar_config(disable=True)
        return cls(pipe, space_id=space, embed_dim=backend.embed_dim(pipe), embed_norm=embed_norm or extra.get("embed_norm"),
                   source=str(name_or_path), backend=backend)

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
