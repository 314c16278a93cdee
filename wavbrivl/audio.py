"""Audio front end: decoding, channel/format normalisation, windowing and log-mel features.

Why it is built this way:

* Decoding goes through soundfile (libsndfile: wav, flac, ogg, mp3, ...) because torchaudio >= 2.9
  no longer decodes files without torchcodec; torchaudio is kept for resampling and the mel filterbank.
* Long inputs are never held whole in memory: a clip is opened as a random-access source and read one
  analysis window at a time, so a two-hour file costs one window's memory, not 460 MB of float32.
* Features are normalised *per sample and per window*, over the frames that hold audio only, so an
  embedding never depends on what else shares the batch and zero padding does not skew the statistics.
* Clips shorter than one window are zero-padded (not repeated): repeating a short sound would turn
  "one beep" into "several beeps" and change what the clip means.
"""
from __future__ import annotations

import io
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Union

import numpy as np
import soundfile as sf
import torch
import torchaudio
from torch import nn

AudioInput = Union[str, os.PathLike, bytes, np.ndarray, torch.Tensor, tuple]

#: A clip whose peak stays below this (about -80 dBFS) is treated as silence.
SILENCE_PEAK = 1e-4


class AudioError(ValueError):
    """Bad audio input. The message names the source and the problem."""


@dataclass
class FrontEndConfig:
    """Settings of the audio front end; stored in a checkpoint's ``config.json``.

    ``kind="logmel"`` is the default log-mel front end; ``kind="wav2clip"`` reproduces Wav2CLIP's
    linear STFT power spectrogram (n_fft 512, hop 353, ``log(x + 1e-7)``) so its weights can be used.
    """

    kind: str = "logmel"
    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 64
    f_min: float = 50.0
    f_max: float | None = None
    window_seconds: float = 5.0
    hop_seconds: float = 2.5
    max_seconds: float = 3 * 3600.0

    def __post_init__(self) -> None:
        if self.kind not in ("logmel", "wav2clip"):
            raise ValueError(f"unknown front-end kind {self.kind!r} (expected 'logmel' or 'wav2clip')")
        if not 0 < self.hop_seconds <= self.window_seconds:
            raise ValueError("hop_seconds must be in (0, window_seconds]")

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))

    @property
    def hop_samples(self) -> int:
        return int(round(self.hop_seconds * self.sample_rate))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------- decoding
def _describe(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray)):
        return f"<{len(source)} bytes of audio>"
    if isinstance(source, tuple):
        return "<(sample_rate, array) audio>"
    return f"<{type(source).__name__} audio>"


def _pcm_to_float(data: np.ndarray, name: str) -> np.ndarray:
    """Integer PCM to float32 in [-1, 1); float input is passed through as float32."""
    if data.dtype.kind == "f":
        return data.astype(np.float32, copy=False)
    if data.dtype == np.uint8:  # 8-bit WAV is unsigned, centred on 128
        return (data.astype(np.float32) - 128.0) / 128.0
    if data.dtype.kind == "i":
        return data.astype(np.float32) / float(2 ** (8 * data.dtype.itemsize - 1))
    if data.dtype == np.bool_ or data.dtype.kind not in "iuf":
        raise AudioError(f"{name}: unsupported sample type {data.dtype}")
    return data.astype(np.float32) / float(2 ** (8 * data.dtype.itemsize)) * 2.0 - 1.0


class AudioClip:
    """A random-access view of one audio input, read in blocks of frames.

    Files and bytes are backed by an open :class:`soundfile.SoundFile` (nothing is decoded up front);
    arrays are wrapped as they are.
    """

    def __init__(self, source: AudioInput, sample_rate: int | None = None) -> None:
        self.name = _describe(source)
        self._file: sf.SoundFile | None = None
        self._array: np.ndarray | None = None
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.exists():
                raise AudioError(f"{path}: file not found")
            if path.is_dir():
                raise AudioError(f"{path}: is a directory, not an audio file")
            if path.stat().st_size == 0:
                raise AudioError(f"{path}: file is empty")
            self._open_file(path)
        elif isinstance(source, (bytes, bytearray, memoryview)):
            if len(source) == 0:
                raise AudioError(f"{self.name}: no audio data (0 bytes)")
            self._open_file(io.BytesIO(bytes(source)))
        elif isinstance(source, tuple):
            if len(source) != 2 or not np.isscalar(source[0]):
                raise AudioError(f"{self.name}: expected (sample_rate, array), as Gradio's Audio component gives")
            self._set_array(np.asarray(source[1]), int(source[0]))
        elif isinstance(source, (np.ndarray, torch.Tensor)):
            if sample_rate is None:
                raise AudioError(f"{self.name}: pass sample_rate= with raw sample arrays")
            array = source.detach().cpu().numpy() if isinstance(source, torch.Tensor) else source
            self._set_array(np.asarray(array), int(sample_rate))
        else:
            raise AudioError(f"{self.name}: unsupported audio input type {type(source).__name__}")

    def _open_file(self, file: Any) -> None:
        try:
            self._file = sf.SoundFile(file)
        except Exception as exc:  # libsndfile reports format problems as several exception types
            raise AudioError(f"{self.name}: cannot decode as audio ({exc})") from None
        self.sample_rate = int(self._file.samplerate)
        self.channels = int(self._file.channels)
        self.frames = int(self._file.frames)
        if self.frames <= 0:
            raise AudioError(f"{self.name}: contains no audio samples")

    def _set_array(self, array: np.ndarray, sample_rate: int) -> None:
        if array.ndim == 1:
            array = array[:, None]
        elif array.ndim == 2:
            # Gradio and soundfile give (frames, channels); torch code usually gives (channels, frames).
            if array.shape[0] <= 16 and array.shape[1] > array.shape[0]:
                array = array.T
        else:
            raise AudioError(f"{self.name}: expected a 1-D or 2-D sample array, got shape {array.shape}")
        if array.size == 0 or array.shape[0] == 0:
            raise AudioError(f"{self.name}: contains no audio samples")
        self._array = _pcm_to_float(array, self.name)
        self.sample_rate = sample_rate
        self.channels = array.shape[1]
        self.frames = array.shape[0]

    def __enter__(self) -> "AudioClip":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate

    def read(self, start: int, count: int) -> np.ndarray:
        """Frames ``[start, start+count)`` mixed to mono float32; shorter at the end of the clip."""
        if self._array is not None:
            block = self._array[start : start + count]
        else:
            assert self._file is not None
            try:
                self._file.seek(start)
                block = self._file.read(count, dtype="float32", always_2d=True)
            except Exception as exc:
                raise AudioError(f"{self.name}: decoding failed at {start / self.sample_rate:.2f} s ({exc})") from None
        mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
        if not np.isfinite(mono).all():
            raise AudioError(f"{self.name}: contains NaN or infinite samples")
        return np.ascontiguousarray(mono, dtype=np.float32)


def _resample(wave: torch.Tensor, orig: int, new: int) -> torch.Tensor:
    if orig == new:
        return wave
    return torchaudio.functional.resample(wave, orig, new)


def load_audio(
    source: AudioInput,
    sample_rate: int = 16000,
    *,
    source_rate: int | None = None,
    max_seconds: float | None = None,
) -> torch.Tensor:
    """Decode a whole input to a mono float32 waveform at ``sample_rate``.

    For long inputs prefer :func:`iter_windows`, which never holds the whole clip.
    ``source_rate`` is the sample rate of a raw array or tensor input.
    """
    with AudioClip(source, source_rate) as clip:
        _check_duration(clip, max_seconds)
        wave = torch.from_numpy(clip.read(0, clip.frames))
        if wave.numel() == 0:
            raise AudioError(f"{clip.name}: contains no audio samples")
        return _resample(wave, clip.sample_rate, sample_rate)


def _check_duration(clip: AudioClip, max_seconds: float | None) -> None:
    if max_seconds is not None and clip.seconds > max_seconds:
        raise AudioError(
            f"{clip.name}: audio is {clip.seconds:.1f} s long; the maximum is {max_seconds:.0f} s "
            "(raise max_seconds in the front-end config to allow longer input)"
        )


def iter_windows(
    source: AudioInput | AudioClip, config: FrontEndConfig, *, source_rate: int | None = None
) -> Iterator[tuple[torch.Tensor, int]]:
    """Yield ``(window, valid_samples)`` pairs covering the clip, at the front end's sample rate.

    Each window has exactly ``config.window_samples`` samples. A clip shorter than one window gives a
    single zero-padded window. Longer clips give windows every ``hop_seconds``; the last one is aligned
    to the clip's end so every window is full of audio. Raises :class:`AudioError` for silent input.
    """
    clip = source if isinstance(source, AudioClip) else AudioClip(source, source_rate)
    try:
        _check_duration(clip, config.max_seconds)
        sr_in, sr_out = clip.sample_rate, config.sample_rate
        win_in = max(1, int(math.ceil(config.window_seconds * sr_in)))
        hop_in = max(1, int(round(config.hop_seconds * sr_in)))
        if clip.frames <= win_in:
            starts = [0]
        else:
            starts = list(range(0, clip.frames - win_in, hop_in)) + [clip.frames - win_in]
        peak = 0.0
        for start in starts:
            block = clip.read(start, win_in)
            if block.size == 0:  # a truncated file can report more frames than it holds
                break
            peak = max(peak, float(np.abs(block).max()))
            wave = _resample(torch.from_numpy(block), sr_in, sr_out)
            valid = min(wave.numel(), config.window_samples)
            window = torch.zeros(config.window_samples)
            window[:valid] = wave[:valid]
            yield window, valid
        if peak < SILENCE_PEAK:
            raise AudioError(f"{clip.name}: the audio is silent (peak below -80 dBFS)")
    finally:
        if not isinstance(source, AudioClip):
            clip.close()


# --------------------------------------------------------------------------------------------- features
class AudioFrontEnd(nn.Module):
    """Waveform windows ``[B, T]`` -> normalised log-spectrogram features ``[B, 1, F, frames]``."""

    def __init__(self, config: FrontEndConfig) -> None:
        super().__init__()
        self.config = config
        if config.kind == "logmel":
            self.spectrogram = torchaudio.transforms.MelSpectrogram(
                sample_rate=config.sample_rate,
                n_fft=config.n_fft,
                win_length=config.win_length,
                hop_length=config.hop_length,
                f_min=config.f_min,
                f_max=config.f_max,
                n_mels=config.n_mels,
                power=2.0,
            )
            self._floor = 1e-6
        else:  # Wav2CLIP's linear power spectrogram
            self.spectrogram = torchaudio.transforms.Spectrogram(n_fft=512, hop_length=353, power=2.0)
            self._floor = 1e-7

    @property
    def n_bins(self) -> int:
        """Frequency bins per frame (mel bands, or the linear spectrogram's n_fft // 2 + 1)."""
        return self.config.n_mels if self.config.kind == "logmel" else self.spectrogram.n_fft // 2 + 1

    @property
    def frame_hop(self) -> int:
        return self.spectrogram.hop_length

    def forward(self, wave: torch.Tensor, valid_samples: torch.Tensor | None = None) -> torch.Tensor:
        spec = torch.log(self.spectrogram(wave) + self._floor)  # [B, F, frames]
        frames = spec.shape[-1]
        if valid_samples is None:
            mask = torch.ones(spec.shape[0], frames, dtype=torch.bool, device=spec.device)
        else:
            valid_frames = (valid_samples.to(spec.device) // self.frame_hop + 1).clamp(1, frames)
            mask = torch.arange(frames, device=spec.device)[None, :] < valid_frames[:, None]
        weight = mask[:, None, :].to(spec.dtype)  # [B, 1, frames]
        count = weight.sum(dim=(1, 2), keepdim=True) * spec.shape[1]
        mean = (spec * weight).sum(dim=(1, 2), keepdim=True) / count
        var = (((spec - mean) * weight) ** 2).sum(dim=(1, 2), keepdim=True) / count
        normed = (spec - mean) / (var.sqrt() + 1e-5) * weight
        return normed.unsqueeze(1)
