"""The procedural world: deterministic, its sounds and pictures carry the attributes, splits hold pairs out."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from wavbrivl.worlds.shapes.world import (
    COLOURS, DEFAULT_HOLDOUT, PITCH_REGISTERS, WorldItem, caption_for, make_item, render_image, render_sound,
    sample_items, write_world,
)


def dominant_frequency(wave: np.ndarray, sr: int = 16000) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(wave.size)))
    return float(np.argmax(spectrum) * sr / wave.size)


def active_seconds(wave: np.ndarray, sr: int = 16000) -> float:
    frames = wave[: wave.size // 160 * 160].reshape(-1, 160)
    energy = (frames**2).mean(axis=1)
    return float((energy > energy.max() * 0.05).sum() * 160 / sr)


def test_same_seed_same_world(tmp_path):
    a = write_world(tmp_path / "a", n_per_combo=2, seed=3)
    b = write_world(tmp_path / "b", n_per_combo=2, seed=3)
    assert a.read_text() == b.read_text()
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    assert len(files) == 24 * 2 * 2 + 1
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    write_world(tmp_path / "c", n_per_combo=2, seed=4)
    name = files[0] if files[0].suffix == ".wav" else next(f for f in files if f.suffix == ".wav")
    assert (tmp_path / "c" / name).read_bytes() != (tmp_path / "a" / name).read_bytes()


def test_manifest_and_held_out_pairs(tmp_path):
    manifest = write_world(tmp_path, n_per_combo=6, seed=0)
    rows = list(csv.DictReader(open(manifest)))
    assert len(rows) == 24 * 6
    assert list(rows[0]) == ["audio", "image", "caption", "label", "split", "colour", "shape", "size", "seen"]
    assert {r["split"] for r in rows} == {"train", "val", "test"}
    for r in rows:
        assert (tmp_path / r["audio"]).is_file() and (tmp_path / r["image"]).is_file()
        held = (r["colour"], r["shape"]) in DEFAULT_HOLDOUT
        assert r["seen"] == str(not held)
        if held:
            assert r["split"] == "test"
        assert r["label"] == caption_for(r["colour"], r["shape"], r["size"])
        assert all(r[k] in r["caption"] for k in ("colour", "shape", "size"))
    assert any(r["split"] == "test" and r["seen"] == "True" for r in rows)


@pytest.mark.parametrize("colour", list(COLOURS))
def test_pitch_register_encodes_colour(colour):
    for seed in range(4):
        wave = render_sound(make_item(colour, "circle", "large", seed))
        lo, hi = PITCH_REGISTERS[colour]
        assert lo * 0.95 <= dominant_frequency(wave) <= hi * 1.05


def test_length_encodes_size_and_pattern_encodes_shape():
    small = [active_seconds(render_sound(make_item("green", "circle", "small", s))) for s in range(5)]
    large = [active_seconds(render_sound(make_item("green", "circle", "large", s))) for s in range(5)]
    assert max(small) < 1.2 < 1.8 < min(large)
    # Beeps switch on and off several times; a steady tone does not.
    def switches(wave):
        frames = wave[: wave.size // 160 * 160].reshape(-1, 160)
        on = (frames**2).mean(axis=1) > (frames**2).mean(axis=1).max() * 0.1
        return int(np.abs(np.diff(on.astype(int))).sum())
    assert switches(render_sound(make_item("blue", "square", "large", 1))) >= 16
    assert switches(render_sound(make_item("blue", "circle", "large", 1))) <= 4
    # A sweep rises: the dominant frequency of its last part is above that of its first part.
    wave = render_sound(make_item("yellow", "triangle", "large", 2))
    frames = np.flatnonzero(np.abs(wave) > 0.3 * np.abs(wave).max())
    first, last = wave[frames[0] : frames[0] + 4000], wave[frames[-1] - 4000 : frames[-1]]
    assert dominant_frequency(last) > dominant_frequency(first) * 1.15


def test_picture_shows_colour_where_the_shape_is():
    for colour, rgb in COLOURS.items():
        img = np.asarray(render_image(make_item(colour, "square", "large", 7))).astype(int)
        distance = np.abs(img - np.array(rgb)).sum(axis=-1)
        covered = (distance < 80).mean()
        assert 0.1 < covered < 0.6  # a large shape covers a good part of the picture
        small = np.asarray(render_image(make_item(colour, "square", "small", 7))).astype(int)
        assert (np.abs(small - np.array(rgb)).sum(axis=-1) < 80).mean() < covered / 2


def test_sample_items_and_captions():
    items = sample_items(50, seed=1)
    assert items == sample_items(50, seed=1)
    assert all(isinstance(i, WorldItem) and i.label == caption_for(i.colour, i.shape, i.size) for i in items)
    assert len({(i.colour, i.shape, i.size) for i in items}) > 12
    wave = render_sound(items[0])
    assert wave.dtype == np.float32 and wave.shape == (48000,) and np.abs(wave).max() <= 0.9 + 1e-6


def _mask(img, colour):
    return np.abs(np.asarray(img).astype(int) - np.array(COLOURS[colour])).sum(axis=-1) < 80


def test_canonical_picture_is_the_same_scene_centred_and_upright():
    for seed in range(6):
        square = make_item("blue", "square", "large", seed)
        posed, canonical = _mask(render_image(square), "blue"), _mask(render_image(square, canonical=True), "blue")
        # Same background everywhere neither shape covers (only the pose changed), and the same size.
        outside = ~(posed | canonical)
        upright = np.asarray(render_image(square, canonical=True))
        assert np.array_equal(np.asarray(render_image(square))[outside], upright[outside])
        assert abs(int(canonical.sum()) - int(posed.sum())) < 0.1 * posed.sum()
        # An axis-aligned square fills its bounding box, and the box is centred.
        ys, xs = np.nonzero(canonical)
        assert canonical.sum() / ((np.ptp(ys) + 1) * (np.ptp(xs) + 1)) > 0.9
        assert abs(ys.mean() - 31.5) < 1.5 and abs(xs.mean() - 31.5) < 1.5
        # A triangle pointing up widens downwards.
        tri = _mask(render_image(make_item("red", "triangle", "large", seed), canonical=True), "red")
        rows = np.flatnonzero(tri.any(axis=1))
        width = tri.sum(axis=1)
        assert width[rows[: len(rows) // 4]].mean() < width[rows[-len(rows) // 4 :]].mean() / 2
        # A small circle is the same disc, moved to the middle.
        circle = make_item("green", "circle", "small", seed)
        moved, centred = _mask(render_image(circle), "green"), _mask(render_image(circle, canonical=True), "green")
        assert abs(int(centred.sum()) - int(moved.sum())) < 0.2 * moved.sum() and centred[31:33, 31:33].all()
