"""``WavBriVL``: the one public object. Audio, images and text in to one cosine space.

A checkpoint is a folder::

    config.json                 # WavBriVLConfig: backbone, front end, encoder, embed dim, image-embedding norm
    audio_encoder.safetensors   # the only trained weights
    backbone/                   # only when the backbone cannot be named by a hub tag (tiny, shapes):
        open_clip_config.json   #   open_clip's ``local-dir:`` format
        open_clip_model.safetensors

Hub backbones (``ViT-B-32/openai``, ``ViT-H-14/laion2b_s32b_b79k``) are referenced, never copied: they
are large and carry their own licences. The backbone is loaded lazily, so embedding audio with a trained
checkpoint needs no backbone weights at all.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import open_clip
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from .audio import AudioError, AudioFrontEnd, AudioInput, FrontEndConfig, iter_windows
from .backbone import BACKBONE_CONFIG_FILE, BackboneConfig, FrozenBackbone, save_open_clip_folder
from .bundle import current_bundle_path
from .encoder import AudioEncoder, EncoderConfig
from .images import ImageInput, load_image
from .presets import get_preset

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "audio_encoder.safetensors"
BACKBONE_DIR = "backbone"


@dataclass
class WavBriVLConfig:
    """Everything needed to rebuild a model; serialised as ``config.json``.

    ``image_embed_norm`` is the mean L2 norm of the backbone's *raw* image embeddings on the training
    images: generators that expect raw embeddings (Stable unCLIP) rescale unit-norm audio embeddings by it.
    """

    backbone: BackboneConfig
    frontend: FrontEndConfig = field(default_factory=FrontEndConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    embed_dim: int = 512
    image_embed_norm: float | None = None
    preset: str | None = None
    info: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "preset": self.preset,
            "embed_dim": self.embed_dim,
            "image_embed_norm": self.image_embed_norm,
            "backbone": self.backbone.to_dict(),
            "frontend": self.frontend.to_dict(),
            "encoder": self.encoder.to_dict(),
            "info": self.info,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "WavBriVLConfig":
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ValueError(f"{source}: checkpoint format version {version!r} is not supported (expected {FORMAT_VERSION})")
        try:
            return cls(
                backbone=BackboneConfig(**data["backbone"]),
                frontend=FrontEndConfig(**data["frontend"]),
                encoder=EncoderConfig(**data["encoder"]),
                embed_dim=int(data["embed_dim"]),
                image_embed_norm=data.get("image_embed_norm"),
                preset=data.get("preset"),
                info=dict(data.get("info") or {}),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{source}: invalid checkpoint config ({exc})") from None


@dataclass
class AudioEmbeddings:
    """Result of embedding many inputs where bad ones are skipped, not fatal."""

    embeddings: torch.Tensor  # [len(indices), D]
    indices: list[int]  # positions (in the input list) of the rows of ``embeddings``
    errors: list[tuple[int, AudioError]]  # (position, error) of each input that was skipped; str(error) names it


class WavBriVL(nn.Module):
    """Audio encoder + frozen open_clip backbone sharing one embedding space."""

    def __init__(
        self,
        config: WavBriVLConfig,
        *,
        root: str | os.PathLike | None = None,
        device: str | torch.device = "cpu",
        backbone_dtype: torch.dtype | None = None,
        backbone: FrozenBackbone | None = None,
    ) -> None:
        """``backbone``: the frozen model of ``config.backbone`` when it is loaded already (retargeting loads it once
        to learn its dimension; big backbones are not loaded twice)."""
        super().__init__()
        if config.encoder.embed_dim != config.embed_dim:
            raise ValueError(f"encoder embed_dim {config.encoder.embed_dim} != model embed_dim {config.embed_dim}")
        if backbone is not None and (backbone.embed_dim != config.embed_dim or backbone.id != config.backbone.id):
            raise ValueError(f"the given backbone {backbone.id!r} ({backbone.embed_dim}-d) is not this config's "
                             f"{config.backbone.id!r} ({config.embed_dim}-d)")
        self.config = config
        self.root = Path(root) if root is not None else None
        self.frontend = AudioFrontEnd(config.frontend)
        self.audio_encoder = AudioEncoder(config.encoder, n_freq=self.frontend.n_bins)
        self._backbone: FrozenBackbone | None = None
        self._backbone_dtype = backbone_dtype
        if backbone is not None:
            object.__setattr__(self, "_backbone", backbone)  # frozen: not part of this model's state dict
        self.to(device)
        self.eval()

    # ------------------------------------------------------------------ construction and checkpoints
    @classmethod
    def from_preset(cls, name: str, *, device: str | torch.device = "cpu", seed: int = 0) -> "WavBriVL":
        """A model with the preset's backbone and a freshly initialised (seeded) audio encoder."""
        preset = get_preset(name)
        config = WavBriVLConfig(
            backbone=preset.backbone,
            frontend=preset.frontend,
            encoder=preset.encoder,
            embed_dim=preset.encoder.embed_dim,
            preset=name,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return cls(config, device=device)

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | os.PathLike,
        *,
        device: str | torch.device = "cpu",
        revision: str | None = None,
        local_files_only: bool | None = None,
        token: str | None = None,
    ) -> "WavBriVL":
        """Load a checkpoint folder, or a Hugging Face Hub repo id holding one (cached, offline-capable)."""
        root = resolve_checkpoint(name_or_path, revision=revision, local_files_only=local_files_only, token=token)
        config_path = root / CONFIG_NAME
        try:
            data = json.loads(config_path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{config_path}: not valid JSON ({exc})") from None
        config = WavBriVLConfig.from_dict(data, source=str(config_path))
        model = cls(config, root=root, device="cpu")
        weights = root / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"{root}: checkpoint has no {WEIGHTS_NAME}")
        try:
            state = load_file(str(weights))
        except Exception as exc:
            raise ValueError(f"{weights}: cannot read the weights, the file is damaged or incomplete ({exc}); "
                             "copy or download the bundle again, or rebuild it") from None
        try:
            model.audio_encoder.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise ValueError(f"{weights}: weights do not match the encoder in config.json ({exc})") from None
        return model.to(device)

    def save_pretrained(
        self, path: str | os.PathLike, *, extra_files: dict[str, Callable[[Path], None]] | None = None
    ) -> Path:
        """Write the checkpoint folder atomically (a crash never leaves a half-written checkpoint).

        ``extra_files`` maps file names to writers called with the path to write (the trainer stores its
        resumable state and resolved config this way, inside the same atomic swap).
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            config = self.config
            if self.stores_backbone():
                self._save_backbone(tmp / BACKBONE_DIR)
                config = WavBriVLConfig.from_dict(config.to_dict())
                config.backbone = BackboneConfig(f"local-dir:{BACKBONE_DIR}", None, id=self.config.backbone.id)
            state = {k: v.detach().cpu().contiguous() for k, v in self.audio_encoder.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
            (tmp / CONFIG_NAME).write_text(json.dumps(config.to_dict(), indent=2) + "\n")
            for name, write in (extra_files or {}).items():
                write(tmp / name)
            if path.exists():
                old = path.with_name(f".{path.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                path.rename(old)
                tmp.rename(path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                tmp.rename(path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return path

    def stores_backbone(self) -> bool:
        """A backbone that no hub tag can reproduce (random or local) is saved inside the checkpoint; one named by
        its hub repo (``hf-hub:org/name``: config and weights come from there) is referenced, like a hub tag."""
        b = self.config.backbone
        if b.model_name.startswith("hf-hub:"):
            return False
        return b.pretrained is None or b.model_name.startswith("local-dir:") or Path(str(b.pretrained)).exists()

    def _save_backbone(self, out: Path) -> None:
        name = self.config.backbone.model_name
        if name.startswith("local-dir:"):
            src = Path(name[len("local-dir:") :])
            if not src.is_absolute() and self.root is not None:
                src = self.root / src
            saved = json.loads((src / BACKBONE_CONFIG_FILE).read_text())
            model_cfg, package = saved.get("model_cfg"), saved.get("wavbrivl", {}).get("text_package", "")
        else:
            model_cfg, package = open_clip.get_model_config(name), ""
        if model_cfg is None:
            raise ValueError(f"cannot find the open_clip config of backbone {name!r} to save it")
        save_open_clip_folder(self.backbone.model, model_cfg, out, text_package=package)

    # ------------------------------------------------------------------ properties
    @property
    def backbone(self) -> FrozenBackbone:
        """The frozen open_clip model, loaded on first use (audio-only use never loads it)."""
        if self._backbone is None:
            context = str(self.root) if self.root else (self.config.preset or "")
            backbone = FrozenBackbone(self.config.backbone, root=self.root, context=context)
            if backbone.embed_dim != self.config.embed_dim:
                raise ValueError(
                    f"backbone {self.config.backbone.id!r} has {backbone.embed_dim}-d embeddings "
                    f"but this audio encoder produces {self.config.embed_dim}-d ones"
                )
            dtype = self._backbone_dtype or (torch.float16 if self.device.type == "cuda" else torch.float32)
            # Bypass nn.Module registration: the backbone is frozen and not part of this model's state dict.
            object.__setattr__(self, "_backbone", backbone.to(self.device, dtype))
        return self._backbone  # type: ignore[return-value]

    @property
    def backbone_id(self) -> str:
        return self.config.backbone.id

    @property
    def embed_dim(self) -> int:
        return self.config.embed_dim

    @property
    def device(self) -> torch.device:
        return next(self.audio_encoder.parameters()).device

    def to(self, *args: Any, **kwargs: Any) -> "WavBriVL":  # type: ignore[override]
        super().to(*args, **kwargs)
        if self._backbone is not None:
            self._backbone.to(self.device)
        return self

    # ------------------------------------------------------------------ audio
    def encode_waveforms(self, wave: torch.Tensor, valid_samples: torch.Tensor | None = None) -> torch.Tensor:
        """Windows ``[B, window_samples]`` -> unit embeddings ``[B, D]``; differentiable (training path)."""
        features = self.frontend(wave.to(self.device), valid_samples)
        return F.normalize(self.audio_encoder(features).float(), dim=-1)

    @torch.inference_mode()
    def embed_audio_many(
        self,
        sources: Sequence[AudioInput],
        *,
        sample_rate: int | None = None,
        batch_size: int = 32,
        progress: bool = False,
        max_seconds: float | None = None,
    ) -> AudioEmbeddings:
        """Embed many inputs; a bad input is reported in ``errors`` and skipped, never fatal.

        Windows from all inputs are streamed through the encoder ``batch_size`` at a time and averaged per
        input, so memory stays bounded by the batch whatever the clips' lengths. ``max_seconds`` overrides
        the front end's length limit (a demo takes 30 s, a batch job hours).
        """
        was_training = self.training
        self.eval()
        n = len(sources)
        sums = torch.zeros(n, self.embed_dim)
        failed: dict[int, AudioError] = {}
        pending: list[tuple[int, torch.Tensor, int]] = []

        def flush() -> None:
            if not pending:
                return
            owners = torch.tensor([p[0] for p in pending])
            wave = torch.stack([p[1] for p in pending])
            valid = torch.tensor([p[2] for p in pending])
            emb = self.encode_waveforms(wave, valid).cpu()
            sums.index_add_(0, owners, emb)
            pending.clear()

        for i, source in enumerate(tqdm(sources, desc="embedding audio", unit="clip", disable=not progress)):
            try:
                for window, valid in iter_windows(source, self.config.frontend, source_rate=sample_rate, max_seconds=max_seconds):
                    if pending and pending[-1][1].numel() != window.numel():
                        flush()  # a short clip run whole (Wav2CLIP) has its own length: batch only equal lengths
                    pending.append((i, window, valid))
                    if len(pending) >= batch_size:
                        flush()
            except AudioError as exc:
                failed[i] = exc
                log.warning("skipped: %s", exc)
        flush()
        self.train(was_training)
        ok = [i for i in range(n) if i not in failed]
        embeddings = F.normalize(sums[ok], dim=-1) if ok else torch.zeros(0, self.embed_dim)
        return AudioEmbeddings(embeddings, ok, sorted(failed.items()))

    def embed_audio(
        self,
        audio: AudioInput | Sequence[AudioInput],
        *,
        sample_rate: int | None = None,
        batch_size: int = 32,
        progress: bool = False,
        max_seconds: float | None = None,
    ) -> torch.Tensor:
        """Audio of any length -> unit embeddings ``[N, D]``; raises :class:`AudioError` on bad input.

        ``audio``: a path, bytes, Gradio's ``(sample_rate, array)``, an array/tensor with ``sample_rate=``,
        or a list of those.
        """
        sources = list(audio) if isinstance(audio, list) else [audio]
        result = self.embed_audio_many(sources, sample_rate=sample_rate, batch_size=batch_size, progress=progress,
                                       max_seconds=max_seconds)
        if result.errors:
            raise result.errors[0][1]
        return result.embeddings

    # ------------------------------------------------------------------ images and text
    @torch.inference_mode()
    def embed_image(
        self, images: ImageInput | Sequence[ImageInput], *, batch_size: int = 64, normalize: bool = True
    ) -> torch.Tensor:
        """Images (PIL, path, or HxWx3 uint8 array) -> embeddings ``[N, D]`` from the frozen image tower."""
        items = list(images) if isinstance(images, (list, tuple)) else [images]
        backbone = self.backbone
        out = []
        for start in range(0, len(items), batch_size):
            pixels = torch.stack([backbone.preprocess(load_image(x)) for x in items[start : start + batch_size]])
            out.append(backbone.encode_image(pixels, normalize=normalize).cpu())
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim)

    @torch.inference_mode()
    def embed_text(self, texts: str | Sequence[str], *, batch_size: int = 256, normalize: bool = True) -> torch.Tensor:
        """Texts -> embeddings ``[N, D]`` from the frozen text tower."""
        items = [texts] if isinstance(texts, str) else list(texts)
        out = [
            self.backbone.encode_text(items[s : s + batch_size], normalize=normalize).cpu()
            for s in range(0, len(items), batch_size)
        ]
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim)

    @staticmethod
    def similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Cosine similarity matrix ``[Na, Nb]``."""
        a = F.normalize(torch.as_tensor(a, dtype=torch.float32).reshape(-1, a.shape[-1]), dim=-1)
        b = F.normalize(torch.as_tensor(b, dtype=torch.float32).reshape(-1, b.shape[-1]), dim=-1)
        return a @ b.T


def resolve_checkpoint(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    local_files_only: bool | None = None,
    token: str | None = None,
) -> Path:
    """A local checkpoint folder, or a hub repo downloaded (or found in the cache) with huggingface_hub."""
    path = current_bundle_path(name_or_path)
    if path.is_dir():
        if not (path / CONFIG_NAME).is_file():
            raise FileNotFoundError(f"{path}: not a wavbrivl checkpoint (no {CONFIG_NAME})")
        return path
    name = str(name_or_path)
    if path.exists() or name.count("/") != 1 or name.startswith((".", "/")):
        raise FileNotFoundError(f"{name}: no such checkpoint folder (and not a Hugging Face repo id 'org/name')")
    from huggingface_hub import snapshot_download

    if local_files_only is None:
        from .hub import offline

        local_files_only = offline()
    try:
        return Path(snapshot_download(name, revision=revision, local_files_only=local_files_only, token=token))
    except Exception as exc:
        raise FileNotFoundError(
            f"could not get checkpoint {name!r} from the Hugging Face Hub ({type(exc).__name__}: {exc}). "
            "Offline, pass a local checkpoint folder (for example assets/shapes) or pre-download it and set HF_HUB_OFFLINE=1."
        ) from None

