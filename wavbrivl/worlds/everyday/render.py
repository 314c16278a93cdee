"""Rendering the catalogue entries that are not files in a package: SoundFont notes and font glyphs.

SoundFonts (FluidR3, TimGM6mb, GeneralUser GS) give each instrument several independent sampled sources; a
note is held for 70 % of its length and then released, so the clip has the instrument's attack and decay.
Glyphs (Noto Color Emoji, Symbola) are drawn on a transparent canvas; the picture step frames them like any
other drawing. Needs ``tinysoundfont`` (``pip install --no-deps tinysoundfont``: its optional PyAudio
dependency does not build without PortAudio headers) for the SoundFonts, and Pillow for the glyphs.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from .catalogue import Render, glyph_text, parse_render

SAMPLE_RATE = 44100
PEAK = 0.9  # synthesizer output level is arbitrary: renders are scaled to this peak
BITMAP_FONT_SIZE = 109  # Noto Color Emoji is a bitmap (CBDT) font that only loads at this size
OUTLINE_FONT_SIZE = 128


def render_note(synth: object, sfid: int, render: Render) -> np.ndarray:
    """One note of a loaded SoundFont as mono float32 at :data:`SAMPLE_RATE`, scaled to :data:`PEAK`."""
    drums = render.kind == "drum"
    channel = 9 if drums else 0
    synth.sounds_off()  # nothing of the previous note may ring into this one
    synth.program_select(channel, sfid, 128 if drums else render.bank, render.program, drums)
    hold = int(SAMPLE_RATE * render.seconds * 0.7)
    synth.noteon(channel, render.note, render.velocity)
    held = np.frombuffer(synth.generate(hold), dtype=np.float32).copy()
    synth.noteoff(channel, render.note)
    tail = np.frombuffer(synth.generate(int(SAMPLE_RATE * render.seconds) - hold), dtype=np.float32).copy()
    wave = np.concatenate([held, tail]).reshape(-1, 2).mean(axis=1)
    peak = float(np.abs(wave).max())
    if peak <= 0:
        raise ValueError(f"render {render.file_name} of {render.soundfont} is silent")
    return (wave / peak * PEAK).astype(np.float32)


def render_soundfont(soundfont: Path, paths: Iterable[str], out_dir: Path) -> list[str]:
    """Render every catalogue ``paths`` entry of one SoundFont into ``out_dir``; return the paths that failed."""
    import soundfile as sf

    try:
        import tinysoundfont
    except ImportError:
        raise RuntimeError("SoundFont renders need tinysoundfont: pip install --no-deps tinysoundfont "
                           "(or pip install 'wavbrivl[world]')") from None
    synth = tinysoundfont.Synth(samplerate=SAMPLE_RATE)
    sfid = synth.sfload(str(soundfont))
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = []
    for path in sorted(paths):
        render = parse_render(path)
        target = out_dir / render.file_name
        if target.exists():
            continue
        try:
            sf.write(target, render_note(synth, sfid, render), SAMPLE_RATE, subtype="PCM_16")
        except (ValueError, RuntimeError, OSError):
            failed.append(path)
    return failed


def render_glyphs(font_file: Path, paths: Iterable[str], out_dir: Path) -> list[str]:
    """Draw the code point of each ``<font>#U+XXXX`` path as a transparent RGBA PNG; return those that failed.

    A glyph the font lacks draws nothing (or a blank box): such renders are reported, not written."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.truetype(str(font_file), OUTLINE_FONT_SIZE)
        size = OUTLINE_FONT_SIZE
    except OSError:  # bitmap-only colour fonts refuse every size but their own
        font = ImageFont.truetype(str(font_file), BITMAP_FONT_SIZE)
        size = BITMAP_FONT_SIZE
    out_dir.mkdir(parents=True, exist_ok=True)
    failed = []
    for path in sorted(paths):
        target = out_dir / (path.split("#", 1)[1] + ".png")
        if target.exists():
            continue
        canvas = Image.new("RGBA", (size * 2, size * 2), (0, 0, 0, 0))
        ImageDraw.Draw(canvas).text((size // 4, size // 4), glyph_text(path), font=font, fill=(0, 0, 0, 255),
                                    embedded_color=True)
        if canvas.getbbox() is None:
            failed.append(path)
            continue
        canvas.save(target)
    return failed
