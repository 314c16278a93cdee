"""A procedural paired world: pictures of coloured shapes, their captions, and sounds that describe them.

It exists so that training, evaluation, search and generation can be shown working end to end with no
downloaded data, and so that a person can *produce* the sounds into a microphone:

=========  ===================  =====================================================================
attribute  in the picture       in the sound
=========  ===================  =====================================================================
colour     red / green / blue / pitch register: red = low hum (150-250 Hz), green = 350-500 Hz,
           yellow               blue = 700-1000 Hz, yellow = high whistle (1400-2000 Hz)
shape      circle / square /    temporal pattern: circle = one steady tone, square = repeated short
           triangle             beeps (~6 per second), triangle = a rising sweep (glide up)
size       small / large        length of the sound: small = short (0.6-1.0 s), large = long (2-2.8 s)
=========  ===================  =====================================================================

Loudness carries nothing on purpose: features are normalised per clip, so gain is invisible to the model.
Every sound gets a random timbre (harmonic weights), pitch within its register, onset, gain and
background noise (10-30 dB SNR), and every picture a random background, position, size and rotation
jitter and pixel noise, so the mapping is learnt, not looked up. Everything is a pure function of
``(seed, index)``: the same seed gives the same world, bit for bit.
"""
from __future__ import annotations

import csv
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 35, 35),
    "green": (35, 170, 60),
    "blue": (40, 80, 225),
    "yellow": (235, 205, 30),
}
PITCH_REGISTERS: dict[str, tuple[float, float]] = {
    "red": (150.0, 250.0),
    "green": (350.0, 500.0),
    "blue": (700.0, 1000.0),
    "yellow": (1400.0, 2000.0),
}
SHAPES = ("circle", "square", "triangle")
SIZES = ("small", "large")
EVENT_SECONDS: dict[str, tuple[float, float]] = {"small": (0.6, 1.0), "large": (2.0, 2.8)}
ATTRIBUTES = {"colour": tuple(COLOURS), "shape": SHAPES, "size": SIZES}

#: Colour x shape pairs that never reach the audio encoder's training (they test generalisation).
DEFAULT_HOLDOUT: tuple[tuple[str, str], ...] = (("red", "triangle"), ("green", "square"), ("blue", "circle"))

CAPTION_TEMPLATES = (
    "a {size} {colour} {shape}",
    "a picture of a {size} {colour} {shape}",
    "a {colour} {shape}, {size}",
    "one {size} {colour} {shape}",
)


def caption_for(colour: str, shape: str, size: str) -> str:
    """The canonical caption (also the item's label)."""
    return CAPTION_TEMPLATES[0].format(colour=colour, shape=shape, size=size)


@dataclass(frozen=True)
class WorldItem:
    colour: str
    shape: str
    size: str
    caption: str
    seed: int  # the item's own seed: image and sound are drawn from it

    @property
    def label(self) -> str:
        return caption_for(self.colour, self.shape, self.size)


def all_combinations() -> list[tuple[str, str, str]]:
    return list(itertools.product(COLOURS, SHAPES, SIZES))


def make_item(colour: str, shape: str, size: str, seed: int) -> WorldItem:
    rng = np.random.default_rng(seed)
    template = CAPTION_TEMPLATES[int(rng.integers(len(CAPTION_TEMPLATES)))]
    return WorldItem(colour, shape, size, template.format(colour=colour, shape=shape, size=size), seed)


def sample_items(n: int, seed: int) -> list[WorldItem]:
    """``n`` items with attributes drawn uniformly at random."""
    rng = np.random.default_rng(seed)
    combos = all_combinations()
    picks = rng.integers(len(combos), size=n)
    seeds = rng.integers(2**31, size=n)
    return [make_item(*combos[int(c)], seed=int(s)) for c, s in zip(picks, seeds)]


# ------------------------------------------------------------------------------------------------ images
def render_image(item: WorldItem, size: int = 64, canonical: bool = False) -> Image.Image:
    """The item's picture: its shape in its colour on a random textured background.

    ``canonical`` draws the same scene (background, size, colour and noise unchanged) in a fixed pose: the
    shape in the middle, the square axis-aligned and the triangle pointing up. The shapes generator learns
    to draw these, because a sound says nothing about rotation or position, and a small generator that
    must also pick them draws round blobs and dots.
    """
    rng = np.random.default_rng([item.seed, 1])
    # Background: a gradient between two muted colours plus noise, never close to the shape colours.
    c0, c1 = rng.uniform(60, 200, 3), rng.uniform(60, 200, 3)
    t = np.linspace(0, 1, size)[None, :, None]
    angle = rng.uniform(0, math.pi)
    grid = (np.cos(angle) * t + np.sin(angle) * t.transpose(1, 0, 2)) / 1.5
    bg = (c0 * (1 - grid) + c1 * grid) * 0.55 + 128 * 0.45
    bg = bg + rng.normal(0, 6, (size, size, 3))
    img = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    scale = size / 64
    radius = (rng.uniform(7, 10) if item.size == "small" else rng.uniform(18, 23)) * scale
    margin = radius + 2 * scale
    cx, cy = rng.uniform(margin, size - margin, 2)
    colour = tuple(int(np.clip(v + rng.normal(0, 12), 0, 255)) for v in COLOURS[item.colour])
    rot = rng.uniform(0, 2 * math.pi)
    if canonical:  # set after the random pose is drawn, so that every other draw stays the same
        rot = math.pi / 4 if item.shape == "square" else -math.pi / 2
        cx = cy = size / 2
    if item.shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=colour)
    else:
        corners = 4 if item.shape == "square" else 3
        r = radius * (1.15 if corners == 4 else 1.25)
        r = min(r, margin)
        points = [(cx + r * math.cos(rot + 2 * math.pi * k / corners), cy + r * math.sin(rot + 2 * math.pi * k / corners))
                  for k in range(corners)]
        draw.polygon(points, fill=colour)
    arr = np.asarray(img).astype(np.float32) + rng.normal(0, 4, (size, size, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


# ------------------------------------------------------------------------------------------------ sounds
def render_sound(item: WorldItem, sample_rate: int = 16000, seconds: float = 3.0) -> np.ndarray:
    """The item's sound (mono float32, peak <= 0.9): pitch = colour, pattern = shape, length = size."""
    rng = np.random.default_rng([item.seed, 2])
    n = int(round(seconds * sample_rate))
    lo, hi = PITCH_REGISTERS[item.colour]
    f0 = rng.uniform(lo, hi * 0.9 if item.shape == "triangle" else hi)
    ev_lo, ev_hi = EVENT_SECONDS[item.size]
    length = min(rng.uniform(ev_lo, ev_hi), seconds - 0.1)
    onset = rng.uniform(0.05, max(0.05, seconds - length - 0.05))
    t = np.arange(n) / sample_rate
    local = t - onset
    inside = (local >= 0) & (local <= length)
    if item.shape == "triangle":  # glide up by a factor of ~1.25-1.45 over the event
        ratio = rng.uniform(1.25, 1.45)
        freq = f0 * ratio ** np.clip(local / length, 0, 1)
    else:
        vibrato = 1 + 0.004 * np.sin(2 * np.pi * rng.uniform(4, 6) * t)
        freq = f0 * vibrato
    phase = 2 * np.pi * np.cumsum(freq) / sample_rate
    weights = rng.uniform(0.05, 1.0, 5) / np.arange(1, 6) ** rng.uniform(0.7, 1.6)
    weights[0] = 1.0
    nyquist = sample_rate / 2 * 0.9  # harmonics above it would alias
    tone = sum(
        w * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) * (k * freq < nyquist)
        for k, w in enumerate(weights, start=1)
    )
    ramp = 0.015
    env = np.clip(local / ramp, 0, 1) * np.clip((length - local) / ramp, 0, 1) * inside
    if item.shape == "square":  # beeps: ~6 per second, duty cycle ~50 %
        rate = rng.uniform(5.0, 7.0)
        beat = (local * rate) % 1.0
        env = env * np.clip((0.5 - np.abs(beat - 0.25) * 2) * 20, 0, 1)
    signal = tone * env
    signal /= max(np.abs(signal).max(), 1e-9)
    noise = rng.standard_normal(n)
    noise = np.convolve(noise, np.ones(3) / 3, mode="same")  # a little colour
    snr_db = rng.uniform(10, 30)
    sig_rms = np.sqrt(np.mean(signal[inside] ** 2)) if inside.any() else 1.0
    noise *= sig_rms / (np.sqrt(np.mean(noise**2)) * 10 ** (snr_db / 20))
    out = (signal + noise) * rng.uniform(0.2, 1.0)
    out *= 0.9 / max(np.abs(out).max(), 1e-9) if np.abs(out).max() > 0.9 else 1.0
    return out.astype(np.float32)


# ------------------------------------------------------------------------------------------------ datasets
MANIFEST_COLUMNS = ("audio", "image", "caption", "label", "split", "colour", "shape", "size", "seen")


def world_items(n_per_combo: int, seed: int) -> list[WorldItem]:
    """``n_per_combo`` items of every colour x shape x size combination, each with its own seed."""
    rng = np.random.default_rng(seed)
    items = []
    for colour, shape, size in all_combinations():
        for s in rng.integers(2**31, size=n_per_combo):
            items.append(make_item(colour, shape, size, int(s)))
    return items


def assign_splits(
    items: list[WorldItem],
    seed: int,
    holdout: tuple[tuple[str, str], ...] | list[tuple[str, str]] | None = DEFAULT_HOLDOUT,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> list[str]:
    """train/val/test per item; held-out colour x shape pairs only ever go to test."""
    held = {tuple(h) for h in (holdout or ())}
    rng = np.random.default_rng([seed, 3])
    splits = []
    for item in items:
        if (item.colour, item.shape) in held:
            splits.append("test")
            continue
        u = rng.uniform()
        splits.append("test" if u < test_fraction else "val" if u < test_fraction + val_fraction else "train")
    return splits


def write_world(
    out_dir: str | Path,
    n_per_combo: int = 20,
    seed: int = 0,
    holdout: tuple[tuple[str, str], ...] | list[tuple[str, str]] | None = DEFAULT_HOLDOUT,
    *,
    sample_rate: int = 16000,
    seconds: float = 3.0,
    image_size: int = 64,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> Path:
    """Write ``images/*.png``, ``audio/*.wav`` (PCM16) and ``manifest.csv``; return the manifest path.

    Manifest columns: audio, image, caption, label, split, colour, shape, size, seen (paths relative to
    the manifest's folder; ``seen`` is False for held-out colour x shape pairs).
    """
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    items = world_items(n_per_combo, seed)
    splits = assign_splits(items, seed, holdout, val_fraction, test_fraction)
    held = {tuple(h) for h in (holdout or ())}
    rows = []
    for i, (item, split) in enumerate(zip(items, splits)):
        stem = f"{i:05d}_{item.size}_{item.colour}_{item.shape}"
        render_image(item, image_size).save(out / "images" / f"{stem}.png")
        sf.write(out / "audio" / f"{stem}.wav", render_sound(item, sample_rate, seconds), sample_rate, subtype="PCM_16")
        rows.append({
            "audio": f"audio/{stem}.wav", "image": f"images/{stem}.png", "caption": item.caption,
            "label": item.label, "split": split, "colour": item.colour, "shape": item.shape,
            "size": item.size, "seen": str((item.colour, item.shape) not in held),
        })
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return manifest
