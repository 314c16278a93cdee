"""Image input: one place that turns paths, arrays and PIL images into RGB PIL images."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, UnidentifiedImageError

ImageInput = Union[str, os.PathLike, Image.Image, np.ndarray]


class ImageError(ValueError):
    """Bad image input. The message names the source and the problem."""


def load_image(source: ImageInput, mode: str = "RGB") -> Image.Image:
    """Return a PIL image in ``mode`` (RGB unless the caller needs transparency, "RGBA"), or raise
    :class:`ImageError` naming the bad input."""
    if isinstance(source, Image.Image):
        return source.convert(mode)
    if isinstance(source, np.ndarray):
        if source.ndim == 2:
            source = np.stack([source] * 3, axis=-1)
        if source.ndim != 3 or source.shape[-1] not in (3, 4):
            raise ImageError(f"<array image>: expected HxWx3 or HxWx4, got shape {source.shape}")
        if source.dtype != np.uint8:
            source = np.clip(source * (255.0 if source.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
        return Image.fromarray(source).convert(mode)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        try:
            with Image.open(path) as img:
                img.load()
                return img.convert(mode)
        except FileNotFoundError:
            raise ImageError(f"{path}: file not found") from None
        except (UnidentifiedImageError, OSError, ValueError) as exc:
            raise ImageError(f"{path}: cannot decode as an image ({exc})") from None
    raise ImageError(f"unsupported image input type {type(source).__name__}")
