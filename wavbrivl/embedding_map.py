"""A 2-D map of a gallery's embeddings, on which any new embedding (a sound) can be placed.

Why PCA of the gallery's image embeddings, and not t-SNE or UMAP: it is deterministic (the same bundle gives
the same map on every server), computed once in milliseconds, and linear, so a sound is placed by the very
projection that placed the pictures (t-SNE has no out-of-sample projection; UMAP's is approximate and
seeded). The price is that two axes keep only part of the variance (``explained`` says how much), so the
map shows the broad layout and the search results stay the exact answer. Axis signs are fixed (each axis's
largest coefficient is positive), so a rebuilt map is not mirrored.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

#: At most this many gallery rows are used to fit the axes and are drawn (evenly spaced rows; a bigger gallery
#: would only crowd the picture and slow the first call).
MAX_POINTS = 4000


@dataclass(frozen=True)
class EmbeddingMap:
    mean: np.ndarray  # [D]
    axes: np.ndarray  # [2, D], orthonormal
    points: np.ndarray  # [N, 2] the gallery rows drawn
    labels: list[str]  # a caption (or name) per drawn row
    rows: np.ndarray  # [N] which gallery rows were drawn
    vectors: np.ndarray  # [N, D] their unit embeddings (float16), to find a sound's nearest drawn pictures
    explained: tuple[float, float]  # share of the gallery's variance along each axis

    @classmethod
    def fit(cls, embeddings: np.ndarray | torch.Tensor, labels: Sequence[str], max_points: int = MAX_POINTS) -> "EmbeddingMap":
        emb = np.asarray(embeddings, dtype=np.float64)
        if emb.ndim != 2 or emb.shape[0] < 3:
            raise ValueError(f"a map needs at least 3 embeddings as [N, D], got shape {emb.shape}")
        if len(labels) != emb.shape[0]:
            raise ValueError(f"{len(labels)} labels for {emb.shape[0]} embeddings")
        rows = np.unique(np.linspace(0, emb.shape[0] - 1, min(max_points, emb.shape[0])).round().astype(int))
        sample = emb[rows]
        mean = sample.mean(0)
        _, s, vt = np.linalg.svd(sample - mean, full_matrices=False)
        axes = vt[:2]
        axes = axes * np.sign(axes[np.arange(2), np.abs(axes).argmax(1)])[:, None]
        variance = s**2
        explained = tuple(float(v) for v in variance[:2] / max(variance.sum(), 1e-12))
        points = (sample - mean) @ axes.T
        vectors = sample / np.maximum(np.linalg.norm(sample, axis=1, keepdims=True), 1e-12)
        return cls(mean, axes, points, [str(labels[i]) for i in rows], rows, vectors.astype(np.float16), explained)  # type: ignore[arg-type]

    def project(self, embeddings: np.ndarray | torch.Tensor) -> np.ndarray:
        """``[D]`` -> ``[2]``, ``[N, D]`` -> ``[N, 2]``: positions on this map."""
        emb = np.asarray(embeddings.detach().cpu() if isinstance(embeddings, torch.Tensor) else embeddings, dtype=np.float64)
        if emb.shape[-1] != self.mean.shape[0]:
            raise ValueError(f"{emb.shape[-1]}-d embeddings cannot be placed on a map of {self.mean.shape[0]}-d ones")
        return (emb - self.mean) @ self.axes.T

    def place(self, embedding: np.ndarray | torch.Tensor, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Where one embedding ``[D]`` lands (``[2]``) and its ``k`` nearest drawn pictures by cosine (indices into
        ``points``/``labels``, nearest first): the pictures a person sees next to it on the map."""
        xy = self.project(embedding)
        if xy.ndim != 1:
            raise ValueError("place() takes one embedding [D]")
        vec = np.asarray(embedding.detach().cpu() if isinstance(embedding, torch.Tensor) else embedding, dtype=np.float32)
        sims = self.vectors.astype(np.float32) @ (vec / max(float(np.linalg.norm(vec)), 1e-12))
        order = np.argsort(-sims, kind="stable")[: max(0, min(k, len(sims)))]
        return xy, order
