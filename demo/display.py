"""How results are shown to a visitor: an unsure answer as a question, a small picture enlarged smoothly."""
from __future__ import annotations

from PIL import Image

DISPLAY_SIDE = 256  # generated pictures smaller than this are enlarged smoothly for the page


def unsure_guesses(scores: dict[str, float], threshold: float, k: int = 3) -> list[tuple[str, float]] | None:
    """The first ``k`` labels when the most likely is below ``threshold`` (the model is unsure), else None.
    ``scores`` come most likely first (as the pipeline and the label chart give them)."""
    ranked = list(scores.items())
    if not ranked or ranked[0][1] >= threshold:
        return None
    return ranked[:k]


def for_display(picture: Image.Image, side: int = DISPLAY_SIDE) -> Image.Image:
    """A small generated picture enlarged smoothly (Lanczos) to ``side`` pixels, so the page and the API show a
    drawing rather than pixel blocks; larger pictures are returned as they are."""
    if max(picture.size) >= side:
        return picture
    scale = side / max(picture.size)
    return picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.Resampling.LANCZOS)
