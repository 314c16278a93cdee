"""Ranking metrics: retrieval (R@K, median rank, MRR) and classification (top-k hits), for the trainer's
validation, the evaluation suite, both worlds' reports and the benchmarks. All of them count from one rank
(:func:`ranks_of_positives`), so a tie is scored the same way everywhere."""
from __future__ import annotations

from typing import Sequence

import torch


def ranks_of_positives(sim: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """1-based rank of the best-ranked positive for each query row.

    ``sim``: ``[Q, G]`` similarities; ``positive``: ``[Q, G]`` bool, True where gallery item g is a correct
    answer for query q (several can be: e.g. all frames of a clip, or identical captions). Ties count
    against the query (a positive tied with a negative ranks below it), so a constant model scores at chance.
    """
    if sim.shape != positive.shape:
        raise ValueError(f"similarity {tuple(sim.shape)} and positives {tuple(positive.shape)} differ in shape")
    if not bool(positive.any(dim=1).all()):
        raise ValueError("every query needs at least one positive in the gallery")
    best_pos = sim.masked_fill(~positive, float("-inf")).amax(dim=1, keepdim=True)
    better_neg = ((sim >= best_pos) & ~positive).sum(dim=1)
    return better_neg + 1


def retrieval_metrics(sim: torch.Tensor, positive: torch.Tensor, ks: tuple[int, ...] = (1, 5, 10)) -> dict[str, float]:
    """R@K, median rank and mean reciprocal rank."""
    ranks = ranks_of_positives(sim.float(), positive).float()
    out = {f"R@{k}": float((ranks <= k).float().mean()) for k in ks}
    out["median_rank"] = float(ranks.median())
    out["MRR"] = float((1.0 / ranks).mean())
    out["queries"] = int(ranks.numel())
    out["gallery"] = int(sim.shape[1])
    return out


def class_ranks(scores: torch.Tensor, truth: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """1-based rank of each row's true class ``truth [N]`` among ``scores [N, classes]`` (ties count against)."""
    truth_ = torch.as_tensor(truth, dtype=torch.long)
    positive = torch.zeros(scores.shape, dtype=torch.bool)
    positive[torch.arange(len(truth_)), truth_] = True
    return ranks_of_positives(scores.detach().cpu(), positive)


def class_hits(scores: torch.Tensor, truth: Sequence[int] | torch.Tensor, ks: Sequence[int] = (1, 5)) -> dict[str, list[bool]]:
    """Per row, whether its true class is among the ``k`` best of ``scores [N, classes]``, as ``{"top1": [...],
    "top5": [...]}``: per-row hits, so a report can average them per clip or per class. A ``k`` of at least the
    number of classes is always a hit; a true class tied with another ranks below it."""
    ranks = class_ranks(scores, truth)
    return {f"top{k}": (ranks <= k).tolist() for k in ks}
