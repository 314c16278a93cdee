"""Shared fixtures: a tiny real model (seeded random open_clip + encoder) and sound files made on the fly."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def tone(freq: float = 440.0, seconds: float = 1.0, sr: int = 16000, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def write_wav(path: Path, wave: np.ndarray, sr: int = 16000, subtype: str | None = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave, sr, subtype=subtype)
    return path


@pytest.fixture(scope="session")
def tiny_model():
    from wavbrivl import WavBriVL

    return WavBriVL.from_preset("tiny")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tiny_model) -> Path:
    return tiny_model.save_pretrained(tmp_path_factory.mktemp("ckpt") / "tiny")
