"""Judging generation: paint one picture per embedding, in batches, then let judges name what each shows.

Both worlds' reports measure their generators this way. The seed of a batch is ``seed`` plus the position of
its first embedding, so a picture depends on where it stands in the list, never on what ran before it: two
reports over the same embeddings paint the same pictures.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence, TypeVar

import torch

from .metrics import class_hits
from .zeroshot import ZeroShotClassifier

R = TypeVar("R")


def paint(pipeline: Any, embeddings: torch.Tensor, *, seed: int = 0, batch: int = 16, **settings: Any) -> list[Any]:
    """One picture per row of ``embeddings`` from ``pipeline.generate_from_embedding`` (``settings``: its
    keywords, e.g. ``steps``)."""
    images: list[Any] = []
    for i in range(0, len(embeddings), batch):
        images += pipeline.generate_from_embedding(embeddings[i : i + batch], seed=seed + i, **settings)
    return images


def paint_and_judge(pipeline: Any, embeddings: torch.Tensor, judges: Mapping[str, Callable[[list[Any]], R]], *,
                    seed: int = 0, batch: int = 16, **settings: Any) -> tuple[list[Any], dict[str, R]]:
    """The pictures :func:`paint` makes, and each judge's verdict on all of them (``{name: judge(pictures)}``)."""
    images = paint(pipeline, embeddings, seed=seed, batch=batch, **settings)
    return images, {name: judge(images) for name, judge in judges.items()}


def tower_judge(pipeline: Any, classifier: ZeroShotClassifier, truth: Sequence[int],
                ks: Sequence[int] = (1, 5)) -> Callable[[list[Any]], dict[str, list[bool]]]:
    """A judge that embeds pictures with the pipeline's frozen image tower and says whether ``classifier`` ranks
    each picture's true class (``truth``, indices into ``classifier.labels``) among its first ``k``."""

    def judge(images: list[Any]) -> dict[str, list[bool]]:
        return class_hits(classifier.scores(pipeline.model.embed_image(images)), truth, ks)

    return judge
