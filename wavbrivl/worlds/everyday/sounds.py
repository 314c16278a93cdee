"""Audio step helpers: one decoding rule for every clip, typing sequences, and near-duplicate fingerprints.

* Every recording (concept or corpus) is decoded with :func:`wavbrivl.audio.load_audio` (soundfile, FFmpeg
  fallback), mixed to mono at 44.1 kHz, stripped of leading/trailing digital silence and cut to its first
  30 s (long ambiences keep their first 30 s: splitting them would let a few files dominate their concept),
  then written as PCM16.
* bucklespring ships single key-down/key-up clips of one IBM Model M; "keyboard typing" needs typing, so
  sequences are assembled from random keys with realistic hold times and gaps (a fixed seed).
* The corpus must not contain copies of concept recordings that other packages re-encoded: a cheap
  fingerprint (log band energies 100-3800 Hz with the file's average spectrum removed, best-lag frame
  correlation; same take ~0.85-1.0, different takes <= 0.4) finds them.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ...audio import SILENCE_PEAK, check_not_silent, load_audio, resample

SAMPLE_RATE = 44100
MAX_SECONDS = 30.0


def trim_silence(wave: np.ndarray, threshold: float = SILENCE_PEAK) -> np.ndarray:
    """Drop leading and trailing samples below ``threshold`` (digital silence, about -80 dBFS)."""
    loud = np.flatnonzero(np.abs(wave) >= threshold)
    return wave[loud[0]:loud[-1] + 1] if loud.size else wave[:0]


def decode_clip(path: Path, max_seconds: float = MAX_SECONDS) -> np.ndarray:
    """Mono float32 at :data:`SAMPLE_RATE`, silence trimmed, at most ``max_seconds``; :class:`AudioError` if unusable."""
    wave = load_audio(path, SAMPLE_RATE).numpy()
    check_not_silent(str(path), float(np.abs(wave).max()) if wave.size else 0.0)
    return np.clip(trim_silence(wave)[: int(max_seconds * SAMPLE_RATE)], -1.0, 1.0)


def write_wav(path: Path, wave: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, wave, SAMPLE_RATE, subtype="PCM_16")


# ------------------------------------------------------------------------------------------- typing
KEY_CLIP = re.compile(r"([0-9a-f]+)-([01])\.wav$")


def typing_sequences(clips: dict[str, np.ndarray], count: int = 12, seconds: float = 4.0, seed: int = 0) -> list[np.ndarray]:
    """Typing from single key clips named ``<scancode>-0.wav`` (press) / ``<scancode>-1.wav`` (release).

    Each press is followed by its release after 60-160 ms; the next press comes 80-300 ms later, with a
    pause of 0.4-0.9 s one time in ten (a word boundary or a thought)."""
    keys: dict[str, dict[str, np.ndarray]] = {}
    for name, wave in clips.items():
        m = KEY_CLIP.search(name)
        if m:
            keys.setdefault(m.group(1), {})[m.group(2)] = wave
    pairs = [(k["0"], k["1"]) for _, k in sorted(keys.items()) if "0" in k and "1" in k]
    if not pairs:
        raise ValueError("no key press/release pairs among the typing clips")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        buffer = np.zeros(int(seconds * SAMPLE_RATE) + SAMPLE_RATE, dtype=np.float32)
        t = rng.uniform(0.0, 0.1)
        while t < seconds:
            down, up = pairs[rng.integers(len(pairs))]
            release = t + rng.uniform(0.06, 0.16)
            for start, clip in ((t, down), (release, up)):
                i = int(start * SAMPLE_RATE)
                n = min(clip.size, buffer.size - i)
                buffer[i:i + n] += clip[:n]
            t = release + (rng.uniform(0.4, 0.9) if rng.random() < 0.1 else rng.uniform(0.08, 0.3))
        wave = trim_silence(buffer[: int(seconds * SAMPLE_RATE)])
        peak = float(np.abs(wave).max())
        out.append(wave / peak * 0.99 if peak > 0.99 else wave)
    return out


# ------------------------------------------------------------------------------------------- fingerprints
FP_RATE = 8000
FP_EDGES = np.geomspace(100, 3800, 33)
FP_WIN, FP_HOP = 512, 128  # 64 ms / 16 ms at 8 kHz


def fingerprint(wave: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(frames, signature)`` of a clip at :data:`SAMPLE_RATE`.

    ``frames`` ([n, 32]): per-frame unit vectors of log band energies with the clip's average spectrum removed
    (what :func:`similarity` compares); ``signature`` ([32]): that average spectrum as a unit vector, a cheap
    first test of whether two clips can be the same take."""
    x = resample(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), SAMPLE_RATE, FP_RATE).numpy()
    if x.size < FP_WIN:
        x = np.pad(x, (0, FP_WIN - x.size))
    n = 1 + (x.size - FP_WIN) // FP_HOP
    frames = x[np.arange(FP_WIN)[None, :] + FP_HOP * np.arange(n)[:, None]] * np.hanning(FP_WIN)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    band = np.digitize(np.fft.rfftfreq(FP_WIN, 1 / FP_RATE), FP_EDGES) - 1
    logs = np.log(np.stack([power[:, band == b].sum(axis=1) for b in range(len(FP_EDGES) - 1)], axis=1) + 1e-9)
    active = logs.max(axis=1) > logs.max() - 12  # frames within ~52 dB of the loudest
    average = logs[active].mean(axis=0) if active.sum() >= 3 else logs.mean(axis=0)
    signature = average - average.mean()
    signature /= np.linalg.norm(signature) + 1e-9
    z = logs - average[None, :] if active.sum() >= 3 else logs
    z = z - z.mean(axis=1, keepdims=True)
    z /= np.linalg.norm(z, axis=1, keepdims=True) + 1e-9
    z[~active] = 0
    return z.astype(np.float32), signature.astype(np.float32)


def similarity(a: np.ndarray, b: np.ndarray, min_overlap: int = 25) -> float:
    """Best mean frame cosine over all lags (only active frames count): 1 for the same take."""
    if len(a) > len(b):
        a, b = b, a
    if len(a) < 5:
        return 0.0
    act_a, act_b = (np.abs(a).sum(1) > 0).astype(np.float32), (np.abs(b).sum(1) > 0).astype(np.float32)
    nfft = int(2 ** np.ceil(np.log2(len(a) + len(b))))
    num = np.fft.irfft((np.fft.rfft(a[::-1], nfft, axis=0) * np.fft.rfft(b, nfft, axis=0)).sum(1), nfft)
    count = np.fft.irfft(np.fft.rfft(act_a[::-1], nfft) * np.fft.rfft(act_b, nfft), nfft)
    num, count = num[: len(a) + len(b) - 1], count[: len(a) + len(b) - 1]
    ok = count >= min(min_overlap, max(5, int(0.6 * act_a.sum())))
    return float(np.where(ok, num / np.maximum(count, 1), 0).max()) if ok.any() else 0.0
