"""Waveform augmentation for training: random crops with gain, speed change, tone colour, background noise and mixing.

A few real recordings per concept are little data; what a sound means survives a different level, a slightly
faster or slower (so higher or lower) take, some background noise and another sound quietly underneath, so
training sees those variations instead of memorising the takes. Every draw comes from the generator passed
in, so a step's batch is a pure function of ``(seed, step)`` (exact resume); an option that is off draws
nothing, so enabling none keeps earlier runs' random streams.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchaudio


@dataclass
class Augment:
    """``gain_db``: uniform gain in ±dB. ``time_shift``: a clip shorter than the window starts up to 10 % in.
    ``speed``: play back at a rate uniform in [1 - speed, 1 + speed] (pitch and tempo move together, like a tape).
    ``noise_snr_db``: add white noise at a signal-to-noise ratio uniform in [low, high] dB (None: off).
    ``mix_prob``/``mix_db``: with this probability mix another clip of the batch under the clip, at a level
    uniform in [low, high] dB relative to it (the clip keeps its own target).
    ``eq_db``: colour each clip with a random smooth equaliser, its gain uniform in ±eq_db at
    :data:`EQ_POINTS` points spread over a log-frequency axis (another microphone, room or game's mix: what
    a held-out source changes most, while the sound stays the same thing)."""

    gain_db: float = 6.0
    time_shift: bool = True
    speed: float = 0.0
    noise_snr_db: tuple[float, float] | None = None
    mix_prob: float = 0.0
    mix_db: tuple[float, float] = (-20.0, -10.0)
    eq_db: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.speed < 0.5:
            raise ValueError(f"speed must be in [0, 0.5), not {self.speed}")
        if not 0.0 <= self.mix_prob <= 1.0:
            raise ValueError(f"mix_prob must be in [0, 1], not {self.mix_prob}")
        if not 0.0 <= self.eq_db <= 40.0:
            raise ValueError(f"eq_db must be in [0, 40], not {self.eq_db}")


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return float(torch.empty(1).uniform_(low, high, generator=g))


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.pow(2).mean(dim=-1, keepdim=True).sqrt().clamp_min(1e-8)


def change_speed(wave: torch.Tensor, rate: float) -> torch.Tensor:
    """``wave`` played ``rate`` times as fast (shorter and higher for rate > 1), by band-limited resampling."""
    new = int(round(100 / rate))
    return wave if new == 100 else torchaudio.functional.resample(wave, 100, new)


def crop_batch(waves: list[np.ndarray], idx: list[int], window: int, g: torch.Generator, aug: Augment | None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows ``[B, window]`` of the clips ``idx`` and their valid lengths; ``aug`` None: leading windows as they are."""
    batch = torch.zeros(len(idx), window)
    valid = torch.zeros(len(idx), dtype=torch.long)
    for row, i in enumerate(idx):
        wave = torch.from_numpy(waves[i])
        rate = 1.0 + _uniform(g, -aug.speed, aug.speed) if aug is not None and aug.speed > 0 else 1.0
        span = int(round(window * rate))  # samples that play for one window at this rate
        n = wave.numel()
        if n > span:
            start = int(torch.randint(0, n - span + 1, (1,), generator=g)) if aug is not None else 0
            crop, offset = wave[start : start + span], 0
        else:
            crop = wave
            room = max(window - int(n / rate), 0)
            shifts = aug is not None and aug.time_shift
            offset = int(torch.randint(0, min(room, window // 10) + 1, (1,), generator=g)) if shifts else 0
        if rate != 1.0:
            crop = change_speed(crop, rate)[: window - offset]
        if aug is not None and aug.gain_db > 0:
            crop = crop * 10 ** (_uniform(g, -aug.gain_db, aug.gain_db) / 20)
        batch[row, offset : offset + crop.numel()] = crop
        valid[row] = offset + crop.numel()
    inside = torch.arange(window)[None, :] < valid[:, None]  # where each clip is: nothing is added to its padding
    if aug is not None and aug.mix_prob > 0 and len(idx) > 1:
        batch = _mix(batch, inside, g, aug)
    if aug is not None and aug.eq_db > 0:
        batch = equalise(batch, torch.empty(len(idx), EQ_POINTS).uniform_(-aug.eq_db, aug.eq_db, generator=g)) * inside
    if aug is not None and aug.noise_snr_db is not None:
        snr = torch.empty(len(idx), 1).uniform_(*aug.noise_snr_db, generator=g)
        noise = torch.randn(batch.shape, generator=g)
        batch = batch + noise * inside * _rms(batch) * 10 ** (-snr / 20)
    return batch, valid


EQ_POINTS = 6  # control points of the random equaliser: broad tilts and bumps, not narrow notches


def equalise(batch: torch.Tensor, gains_db: torch.Tensor) -> torch.Tensor:
    """Each row of ``batch [B, T]`` through a zero-phase filter whose gain in dB is ``gains_db [B, K]`` at K points
    evenly spaced in log frequency from 1/256 of the band to its top, interpolated linearly between them."""
    n = batch.shape[-1]
    spectrum = torch.fft.rfft(batch, dim=-1)
    bins = spectrum.shape[-1]
    position = torch.log2(torch.arange(bins, dtype=torch.float32).clamp_min(1) / (bins - 1)).clamp_min(-8.0) / 8.0 + 1.0
    scaled = position * (gains_db.shape[1] - 1)  # 0 .. K-1 along the control points
    low = scaled.floor().long().clamp(max=gains_db.shape[1] - 2)
    frac = scaled - low
    curve = gains_db[:, low] * (1 - frac) + gains_db[:, low + 1] * frac  # [B, bins]
    return torch.fft.irfft(spectrum * 10 ** (curve / 20), n=n, dim=-1)


def _mix(batch: torch.Tensor, inside: torch.Tensor, g: torch.Generator, aug: Augment) -> torch.Tensor:
    """Each chosen row gets the next row of the batch underneath, ``mix_db`` below its own level."""
    chosen = torch.rand(batch.shape[0], generator=g) < aug.mix_prob
    level = torch.empty(batch.shape[0], 1).uniform_(*aug.mix_db, generator=g)
    other = batch.roll(1, dims=0)
    scale = _rms(batch) / _rms(other) * 10 ** (level / 20)
    return torch.where(chosen[:, None], batch + other * scale * inside, batch)
