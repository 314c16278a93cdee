"""The frozen vision-language backbone (open_clip): the embedding space audio is aligned to.

It never trains: towers are in eval mode with ``requires_grad=False`` and :meth:`FrozenBackbone.train`
is a no-op, so no trainer, optimiser or ``model.train()`` call can move the space the audio encoder,
the index and the generator all agree on.
"""
from __future__ import annotations

import logging
import os
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import open_clip
import torch
from safetensors.torch import save_model
from torch import nn

log = logging.getLogger(__name__)

MODEL_CONFIG_DIR = Path(__file__).parent / "model_configs"
open_clip.add_model_config(MODEL_CONFIG_DIR)


class BackboneUnavailableError(RuntimeError):
    """The backbone's weights could not be loaded (typically: offline and not cached)."""


@dataclass
class BackboneConfig:
    """Which open_clip model defines the space.

    ``model_name``: an open_clip model name, ``hf-hub:org/repo``, or ``local-dir:PATH`` (relative paths
    are resolved against the checkpoint folder). ``pretrained``: an open_clip tag, a local weights file,
    or None for random weights drawn with ``init_seed`` (tests). ``id`` names the embedding space:
    indexes, caches and generators compare ids to refuse embeddings from another space.
    """

    model_name: str
    pretrained: str | None = None
    id: str = ""
    init_seed: int | None = None

    def __post_init__(self) -> None:
        if not self.id:
            tag = self.pretrained if self.pretrained else f"random-seed{self.init_seed or 0}"
            self.id = f"{self.model_name}/{Path(tag).name if os.sep in str(tag) else tag}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


OFFLINE_HINT = (
    "To run offline: set HF_HUB_OFFLINE=1 with the weights already in the Hugging Face cache, "
    "pass a local weights file or folder, or use the offline starter bundle (python app.py with no arguments; "
    "checkpoint assets/starter)."
)


class FrozenBackbone(nn.Module):
    """An open_clip model with its preprocessing and tokenizer, frozen."""

    def __init__(self, config: BackboneConfig, root: str | os.PathLike | None = None, *, context: str = "") -> None:
        super().__init__()
        self.config = config
        model_name = config.model_name
        if model_name.startswith("local-dir:"):
            local = Path(model_name[len("local-dir:") :])
            if not local.is_absolute() and root is not None:
                local = Path(root) / local
            model_name = f"local-dir:{local}"
        pretrained = config.pretrained
        if pretrained and root is not None and not Path(pretrained).is_absolute() and (Path(root) / pretrained).exists():
            pretrained = str(Path(root) / pretrained)
        try:
            with torch.random.fork_rng(devices=[]):
                if config.init_seed is not None:
                    torch.manual_seed(config.init_seed)
                model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained)
            self.tokenizer = open_clip.get_tokenizer(model_name)
        except (RuntimeError, OSError, ValueError) as exc:
            what = f"open_clip model {config.model_name!r}" + (f" with pretrained weights {config.pretrained!r}" if config.pretrained else "")
            where = f" (preset/checkpoint {context!r})" if context else ""
            raise BackboneUnavailableError(f"could not load {what}{where}: {exc}. {OFFLINE_HINT}") from exc
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model
        self.train(False)
        self.preprocess = preprocess
        visual = model.visual
        self.embed_dim = int(getattr(visual, "output_dim", 0) or model.text_projection.shape[-1])
        self.image_size = getattr(visual, "image_size", None)

    @property
    def id(self) -> str:
        return self.config.id

    @property
    def logit_scale(self) -> float:
        """The temperature the backbone was trained with (``exp(logit_scale)``, about 100 for CLIP models).

        Zero-shot probabilities are a softmax over cosine similarities times this, as CLIP computes them.
        """
        scale = getattr(self.model, "logit_scale", None)
        if scale is None:
            return 100.0
        return float(torch.as_tensor(scale).float().exp().clamp(max=100.0))

    def train(self, mode: bool = True) -> "FrozenBackbone":
        """Stay in eval mode whatever is asked: the backbone is frozen by design."""
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @torch.inference_mode()
    def encode_image(self, pixels: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Preprocessed pixels ``[B, 3, H, W]`` -> image embeddings ``[B, D]`` (float32)."""
        out = self.model.encode_image(pixels.to(self.device, self.dtype), normalize=normalize)
        return out.float()

    @torch.inference_mode()
    def encode_text(self, texts: Sequence[str], normalize: bool = True) -> torch.Tensor:
        tokens = self.tokenizer(list(texts)).to(self.device)
        return self.model.encode_text(tokens, normalize=normalize).float()


BACKBONE_CONFIG_FILE = "open_clip_config.json"
BACKBONE_WEIGHTS_FILE = "open_clip_model.safetensors"


def save_open_clip_folder(model: nn.Module, model_cfg: dict[str, Any], out: str | os.PathLike) -> Path:
    """Write open_clip's ``local-dir:`` format (config + safetensors weights), which
    ``create_model_and_transforms("local-dir:PATH")`` reads back with no network."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": model_cfg, "preprocess_cfg": open_clip.get_model_preprocess_cfg(model)}
    (out / BACKBONE_CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    save_model(model, str(out / BACKBONE_WEIGHTS_FILE))
    return out


def weights_digest(folder: str | os.PathLike) -> str:
    """A short content hash of a saved backbone: the id of the embedding space its weights define."""
    h = hashlib.sha256()
    with open(Path(folder) / BACKBONE_WEIGHTS_FILE, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()[:12]
