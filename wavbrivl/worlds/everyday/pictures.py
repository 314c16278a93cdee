"""Picture step: every drawing in one canonical framing, which is what the world's picture models learn.

Drawings come as SVG (openclipart, gcompris, EmojiOne), PNG/JPG/WEBP stamps and clip art, and rendered
glyphs, at every size and with or without transparency. Each is composited on white, trimmed to the
drawing's bounding box, padded to a square with a small white margin and resized to 128x128 RGB, so the
models see the subject the same way whatever the source's canvas.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from ...images import ImageError, load_image

SIZE = 128
MARGIN = 0.06  # of the square's side, on each side
SVG_WIDTH = 512  # SVGs are rasterised at this width before framing
INK_THRESHOLD = 10  # a pixel this far from white (0-255, any channel) belongs to the drawing


def rasterise(path: Path) -> Image.Image:
    """Decode a picture file to RGBA (SVG through cairosvg). Raises :class:`ImageError` naming the file."""
    if path.suffix.lower() not in (".svg", ".svgz"):
        return load_image(path, mode="RGBA")
    try:
        import cairosvg
    except (ImportError, OSError) as exc:  # OSError: cairocffi cannot find the system's libcairo
        raise ImageError(f"{path}: SVG pictures need cairosvg and libcairo ({exc}); pip install 'wavbrivl[world]'") from None
    try:
        png = cairosvg.svg2png(url=str(path), output_width=SVG_WIDTH)
    except Exception as exc:  # noqa: BLE001 - cairosvg raises many types for bad SVGs; each means "cannot render"
        raise ImageError(f"{path}: cannot render the SVG ({type(exc).__name__}: {exc})") from None
    return load_image(Image.open(io.BytesIO(png)), mode="RGBA")


def frame(img: Image.Image, size: int = SIZE) -> Image.Image:
    """Composite on white, trim to the drawing, pad to a square with a margin, resize to ``size`` x ``size`` RGB."""
    white = Image.new("RGBA", img.size, (255, 255, 255, 255))
    flat = Image.alpha_composite(white, img.convert("RGBA")).convert("RGB")
    ink = (255 - np.asarray(flat, dtype=np.int16)).max(axis=2) > INK_THRESHOLD
    if not ink.any():
        raise ImageError("the picture is blank (nothing but white or transparency)")
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    crop = flat.crop((int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1))
    side = max(crop.size)
    pad = max(1, round(side * MARGIN))
    square = Image.new("RGB", (side + 2 * pad, side + 2 * pad), (255, 255, 255))
    square.paste(crop, (pad + (side - crop.width) // 2, pad + (side - crop.height) // 2))
    return square.resize((size, size), Image.Resampling.LANCZOS)


def prepare_picture(path: Path, out: Path) -> Image.Image:
    """Rasterise and frame one picture file and save it as PNG at ``out``."""
    try:
        framed = frame(rasterise(path))
    except ImageError as exc:
        raise ImageError(str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}") from None
    out.parent.mkdir(parents=True, exist_ok=True)
    framed.save(out)
    return framed
