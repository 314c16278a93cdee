"""Import the published Wav2CLIP weights as a wavbrivl checkpoint.

Wav2CLIP (Wu et al., 2022) is a ResNet-18 over a 16 kHz linear STFT power spectrogram (n_fft 512,
hop 353, ``log(x + 1e-7)``) followed by an MLP 512 -> 512 -> 512, aligned to CLIP ViT-B/32 (OpenAI).
Its checkpoint is a PyTorch Lightning file whose ``state_dict`` holds ``audio_encoder.*`` (the ResNet;
its unused ``fc`` classifier and ``spectrogram.window`` buffer are dropped) and ``audio_transform.*`` (the MLP),
imported as the encoder's ``trunk.*`` and ``head.*`` (:data:`~wavbrivl.encoder.WAV2CLIP_NAMES`).

Two deliberate differences from the original code: the spectrogram is normalised per sample (Wav2CLIP
normalised over the whole batch, so its embeddings depended on batch company), and clips longer than
10 s (its training length) are windowed and pooled like every wavbrivl model. A clip up to 10 s long runs
whole, in one pass and unpadded, as the original ran it (``FrontEndConfig.pads_short_clips``).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from .audio import FrontEndConfig
from .backbone import BackboneConfig
from .encoder import EncoderConfig, renamed_keys
from .model import WavBriVL, WavBriVLConfig

log = logging.getLogger(__name__)

_DROPPED_PREFIXES = ("audio_encoder.fc.", "audio_encoder.fc_.", "audio_encoder.spectrogram.", "audio_encoder.softmax.")


def wav2clip_config() -> WavBriVLConfig:
    return WavBriVLConfig(
        backbone=BackboneConfig("ViT-B-32", "openai"),
        frontend=FrontEndConfig(kind="wav2clip", window_seconds=10.0, hop_seconds=5.0),
        encoder=EncoderConfig.wav2clip(),
        embed_dim=512,
        preset="vit-b-32",
        info={"source": "Wav2CLIP (descriptinc/lyrebird-wav2clip), imported"},
    )


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        # weights_only: a checkpoint from the internet must never run code while loading.
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"{path}: cannot be read as a weights-only PyTorch checkpoint ({type(exc).__name__}: {exc}). "
            "If it holds pickled Python objects besides tensors, re-save just its state_dict from a trusted environment."
        ) from None
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: no state dict of tensors found (expected a 'state_dict' entry)")
    return state


def import_wav2clip(path: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> WavBriVL:
    """Load a Wav2CLIP checkpoint into a :class:`WavBriVL` (and save it to ``out_dir`` when given)."""
    path = Path(path)
    state = _read_state_dict(path)
    kept = {
        k: v
        for k, v in state.items()
        if k.startswith(("audio_encoder.", "audio_transform.")) and not k.startswith(_DROPPED_PREFIXES)
    }
    if not any(k.startswith("audio_transform.") for k in kept):
        raise ValueError(f"{path}: not a Wav2CLIP checkpoint (no 'audio_transform.*' keys)")
    ignored = sorted(set(state) - set(kept))
    if ignored:
        log.info("ignoring %d keys not used for embedding (e.g. %s)", len(ignored), ignored[:3])
    model = WavBriVL(wav2clip_config())
    try:
        model.audio_encoder.load_state_dict(renamed_keys(kept), strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not match the Wav2CLIP layout ({exc})") from None
    if out_dir is not None:
        model.save_pretrained(out_dir)
    return model
