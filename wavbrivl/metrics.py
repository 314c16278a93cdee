"""Retrieval metrics shared by the trainer's validation and the evaluation suite."""
from __future__ import annotations

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
