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

#: The machine-readable reasons an input can be refused (``AudioError.reason``).
REASONS = ("not_found", "empty", "undecodable", "silent", "too_long", "non_finite", "invalid")


FRONT_ENDS = ("logmel", "wav2clip", "aisfx")
AISFX_LOG_MAX = 9.457798957824707  # the largest log-mel value in aisfx's training data ("original" min-max scaling)


class AudioError(ValueError):
    """Bad audio input.

    The message names the source and the problem (for logs and the command line); ``reason`` is one of
    :data:`REASONS`, so that a user interface can say it in its own words (and language) without matching
    message text. ``seconds`` and ``limit`` are set for ``too_long``.
    """

    def __init__(self, source: str, reason: str, detail: str, *, seconds: float | None = None,
                 limit: float | None = None) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown AudioError reason {reason!r}")
        super().__init__(f"{source}: {detail}")
        self.source, self.reason, self.detail = source, reason, detail
        self.seconds, self.limit = seconds, limit


@dataclass
class FrontEndConfig:
    """Settings of the audio front end; stored in a checkpoint's ``config.json``.

    ``kind="logmel"`` is the default log-mel front end (normalised per sample); ``kind="wav2clip"``
    reproduces Wav2CLIP's linear STFT power spectrogram (n_fft 512, hop 353, ``log(x + 1e-7)``) and
    ``kind="aisfx"`` the aisfx network's (:meth:`aisfx`), so that their pretrained weights can be used.
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
        if self.kind not in FRONT_ENDS:
            raise ValueError(f"unknown front-end kind {self.kind!r} (expected one of {', '.join(FRONT_ENDS)})")
        if not 0 < self.hop_seconds <= self.window_seconds:
            raise ValueError("hop_seconds must be in (0, window_seconds]")

    @property
    def window_samples(self) -> int:
        return int(round(self.window_seconds * self.sample_rate))

    @property
    def pads_short_clips(self) -> bool:
        """Whether a clip shorter than one window is zero-padded to the window's length.

        The project's own encoders are trained on fixed windows and mask the padding out of their feature
        statistics. Wav2CLIP ran every clip whole, in one pass, with no padding; in its ResNet the padding
        would enter the average pool (a 5-s clip in a 10-s window: cosine 0.998 to the original), so the
        Wav2CLIP layout runs a short clip at its own length.
        """
        return self.kind != "wav2clip"

    @classmethod
    def aisfx(cls, **overrides: Any) -> "FrontEndConfig":
        """The front end the aisfx network was trained with (Ma & Lerch 2022): 44.1 kHz, 96 HTK mel bands over
        0-22 050 Hz from a 2048-point power spectrum every 1024 samples, ``log10(10000 S + 1)`` scaled by its
        training maximum, in blocks of 100 frames (2.3 s) that overlap by half. No per-clip normalisation:
        the network saw absolute levels."""
        block = 99 * 1024  # 100 frames with centred frames
        settings: dict[str, Any] = dict(kind="aisfx", sample_rate=44100, n_fft=2048, win_length=2048, hop_length=1024,
                                        n_mels=96, f_min=0.0, f_max=22050.0, window_seconds=block / 44100,
                                        hop_seconds=50 * 1024 / 44100)
        return cls(**{**settings, **overrides})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------------------------- decoding
def _describe(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
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
        raise AudioError(name, "invalid", f"unsupported sample type {data.dtype}")
    return data.astype(np.float32) / float(2 ** (8 * data.dtype.itemsize)) * 2.0 - 1.0


def check_duration(name: str, seconds: float, max_seconds: float | None) -> None:
    """The one length check: every path (files, bytes, arrays, FFmpeg-decoded streams) goes through it."""
    if max_seconds is not None and seconds > max_seconds:
        raise AudioError(
            name, "too_long",
            f"audio is {seconds:.1f} s long; the maximum is {max_seconds:.0f} s "
            "(raise max_seconds in the front-end config to allow longer input)",
            seconds=seconds, limit=max_seconds,
        )


def check_not_silent(name: str, peak: float) -> None:
    if peak < SILENCE_PEAK:
        raise AudioError(name, "silent", "the audio is silent (peak below -80 dBFS)")


def decode_with_av(
    file: Any, name: str, *, sample_rate: int | None = None, max_seconds: float | None = None
) -> tuple[int, np.ndarray]:
    """Decode the first audio stream with FFmpeg (PyAV) to mono float32: formats libsndfile cannot read
    (m4a/AAC, webm/Opus, mp4, wma ...) and the audio tracks of videos.

    ``sample_rate`` resamples while decoding (None keeps the stream's rate). The length is checked from
    the container header before decoding, and again while decoding (headers can lie or be missing), so an
    over-long upload costs at most ``max_seconds`` of decoding.
    """
    try:
        import av
    except ImportError:  # pragma: no cover - av is a dependency; this only guards broken installs
        raise AudioError(name, "undecodable", "cannot decode as audio (libsndfile failed and PyAV is not installed)") from None
    chunks: list[np.ndarray] = []
    try:
        with av.open(file) as container:
            if not container.streams.audio:
                raise AudioError(name, "undecodable", "has no audio stream")
            stream = container.streams.audio[0]
            rate = int(sample_rate or stream.rate or 0)
            if rate <= 0:
                raise AudioError(name, "undecodable", "the audio stream has no sample rate")
            if container.duration is not None:
                check_duration(name, container.duration / 1_000_000, max_seconds)  # av.time_base is microseconds
            limit = None if max_seconds is None else int(max_seconds * rate) + 1
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            total = 0
            for frame in container.decode(stream):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
                    total += chunks[-1].size
                if limit is not None and total > limit:
                    check_duration(name, total / rate, max_seconds)
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except AudioError:
        raise
    except Exception as exc:  # noqa: BLE001 - FFmpeg errors come in many classes; each means "not decodable"
        raise AudioError(name, "undecodable", f"cannot decode as audio ({type(exc).__name__}: {exc})") from None
    return rate, (np.concatenate(chunks).astype(np.float32, copy=False) if chunks else np.zeros(0, np.float32))


class AudioClip:
    """A random-access view of one audio input, read in blocks of frames.

    Files and bytes that libsndfile reads (wav, flac, ogg, mp3 ...) are backed by an open
    :class:`soundfile.SoundFile`, so nothing is decoded up front and a long file costs one block's memory.
    Other formats (m4a, webm ...) are decoded once by FFmpeg through PyAV; arrays are wrapped as they are.
    ``max_seconds`` is checked as soon as the length is known, from the header where there is one.
    """

    def __init__(self, source: AudioInput, sample_rate: int | None = None, *, max_seconds: float | None = None,
                 decode_rate: int | None = None) -> None:
        self.name = _describe(source)
        self._file: sf.SoundFile | None = None
        self._array: np.ndarray | None = None
        self._max_seconds = max_seconds
        self._decode_rate = decode_rate
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.exists():
                raise AudioError(self.name, "not_found", "file not found")
            if path.is_dir():
                raise AudioError(self.name, "invalid", "is a directory, not an audio file")
            if path.stat().st_size == 0:
                raise AudioError(self.name, "empty", "file is empty")
            self._open_file(path, lambda: str(path))
        elif isinstance(source, (bytes, bytearray, memoryview)):
            if len(source) == 0:
                raise AudioError(self.name, "empty", "no audio data (0 bytes)")
            data = bytes(source)
            self._open_file(io.BytesIO(data), lambda: io.BytesIO(data))
        elif isinstance(source, tuple):
            if len(source) != 2 or not np.isscalar(source[0]):
                raise AudioError(self.name, "invalid", "expected (sample_rate, array), as Gradio's Audio component gives")
            self._set_array(np.asarray(source[1]), int(source[0]))
        elif isinstance(source, (np.ndarray, torch.Tensor)):
            if sample_rate is None:
                raise AudioError(self.name, "invalid", "pass sample_rate= with raw sample arrays")
            array = source.detach().cpu().numpy() if isinstance(source, torch.Tensor) else source
            self._set_array(np.asarray(array), int(sample_rate))
        else:
            raise AudioError(self.name, "invalid", f"unsupported audio input type {type(source).__name__}")
        check_duration(self.name, self.seconds, max_seconds)

    def _open_file(self, file: Any, reopen: Any) -> None:
        try:
            self._file = sf.SoundFile(file)
        except Exception:  # noqa: BLE001 - libsndfile reports "not my format" as several exception types
            rate, mono = decode_with_av(reopen(), self.name, sample_rate=self._decode_rate, max_seconds=self._max_seconds)
            self._set_array(mono, rate)
            return
        self.sample_rate = int(self._file.samplerate)
        self.channels = int(self._file.channels)
        self.frames = int(self._file.frames)
        if self.frames <= 0:
            raise AudioError(self.name, "empty", "contains no audio samples")

    def _set_array(self, array: np.ndarray, sample_rate: int) -> None:
        if sample_rate <= 0:
            raise AudioError(self.name, "invalid", f"invalid sample rate ({sample_rate} Hz)")
        if array.ndim == 1:
            array = array[:, None]
        elif array.ndim == 2:
            # Gradio and soundfile give (frames, channels); torch code usually gives (channels, frames).
            if array.shape[0] <= 16 and array.shape[1] > array.shape[0]:
                array = array.T
        else:
            raise AudioError(self.name, "invalid", f"expected a 1-D or 2-D sample array, got shape {array.shape}")
        if array.size == 0 or array.shape[0] == 0:
            raise AudioError(self.name, "empty", "contains no audio samples")
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
            except Exception as exc:  # noqa: BLE001
                raise AudioError(self.name, "undecodable",
                                 f"decoding failed at {start / self.sample_rate:.2f} s ({exc})") from None
        mono = block.mean(axis=1, dtype=np.float32) if block.shape[1] > 1 else block[:, 0]
        if not np.isfinite(mono).all():
            raise AudioError(self.name, "non_finite", "contains NaN or infinite samples")
        return np.ascontiguousarray(mono, dtype=np.float32)


def resample(wave: torch.Tensor, orig: int, new: int) -> torch.Tensor:
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
    with AudioClip(source, source_rate, max_seconds=max_seconds, decode_rate=sample_rate) as clip:
        wave = torch.from_numpy(clip.read(0, clip.frames))
        if wave.numel() == 0:
            raise AudioError(clip.name, "empty", "contains no audio samples")
        return resample(wave, clip.sample_rate, sample_rate)


def iter_windows(
    source: AudioInput | AudioClip, config: FrontEndConfig, *, source_rate: int | None = None,
    max_seconds: float | None = None,
) -> Iterator[tuple[torch.Tensor, int]]:
    """Yield ``(window, valid_samples)`` pairs covering the clip, at the front end's sample rate.

    Each window has exactly ``config.window_samples`` samples. A clip shorter than one window gives a
    single zero-padded window, or, for a front end that does not pad (``config.pads_short_clips`` is False:
    Wav2CLIP), a single window of the clip's own length (at least ``n_fft`` samples). Longer clips give windows
    every ``hop_seconds``; the last one is aligned to the clip's end so every window is full of audio. Raises
    :class:`AudioError` for silent input. ``max_seconds`` (default: the config's) is the longest input accepted.
    """
    limit = config.max_seconds if max_seconds is None else max_seconds
    if isinstance(source, AudioClip):
        clip = source
        check_duration(clip.name, clip.seconds, limit)
    else:
        clip = AudioClip(source, source_rate, max_seconds=limit, decode_rate=config.sample_rate)
    try:
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
            wave = resample(torch.from_numpy(block), sr_in, sr_out)
            valid = min(wave.numel(), config.window_samples)
            size = config.window_samples if config.pads_short_clips else max(valid, config.n_fft)
            window = torch.zeros(size)
            window[:valid] = wave[:valid]
            yield window, valid
        check_not_silent(clip.name, peak)
    finally:
        if not isinstance(source, AudioClip):
            clip.close()


# --------------------------------------------------------------------------------------------- features
class AudioFrontEnd(nn.Module):
    """Waveform windows ``[B, T]`` -> log-spectrogram features ``[B, 1, F, frames]``."""

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
        elif config.kind == "wav2clip":  # Wav2CLIP's linear power spectrogram
            self.spectrogram = torchaudio.transforms.Spectrogram(n_fft=512, hop_length=353, power=2.0)
            self._floor = 1e-7
        else:  # aisfx: librosa 0.9's STFT (zero-padded centred frames) and unit-sum HTK mel bands
            self.spectrogram = torchaudio.transforms.Spectrogram(
                n_fft=config.n_fft, win_length=config.win_length, hop_length=config.hop_length, power=2.0,
                center=True, pad_mode="constant")
            self.register_buffer("mel_bands", unit_sum_mel_bands(config), persistent=False)

    @property
    def n_bins(self) -> int:
        """Frequency bins per frame (mel bands, or the linear spectrogram's n_fft // 2 + 1)."""
        return self.config.n_mels if self.config.kind != "wav2clip" else self.spectrogram.n_fft // 2 + 1

    @property
    def frame_hop(self) -> int:
        return self.spectrogram.hop_length

    def forward(self, wave: torch.Tensor, valid_samples: torch.Tensor | None = None) -> torch.Tensor:
        if self.config.kind == "aisfx":
            # Zero padding is silence, whose features are 0, as aisfx padded its blocks: nothing to mask.
            mel = torch.matmul(self.spectrogram(wave).transpose(1, 2), self.mel_bands).transpose(1, 2)
            return (torch.log10(mel * 10000.0 + 1.0) / AISFX_LOG_MAX).unsqueeze(1)
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


def unit_sum_mel_bands(config: FrontEndConfig) -> torch.Tensor:
    """``[n_fft // 2 + 1, n_mels]`` HTK triangles each scaled to sum to 1 (librosa's ``mel(norm=1)``, which
    torchaudio does not offer: its ``norm="slaney"`` is an area normalisation and differs by up to 10x)."""
    bands = torchaudio.functional.melscale_fbanks(
        config.n_fft // 2 + 1, config.f_min, config.f_max or config.sample_rate / 2, config.n_mels, config.sample_rate,
        norm=None, mel_scale="htk")
    sums = bands.sum(dim=0, keepdim=True)
    tiny = torch.finfo(torch.float32).tiny
    return torch.where(sums > tiny, bands / sums.clamp_min(tiny), bands)
