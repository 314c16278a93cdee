"""Contrastive objectives: InfoNCE with MoCo-style memory queues, and the plain symmetric CLIP loss.

With a frozen image tower the image "keys" are fixed points, so a queue of past keys adds thousands of
negatives for free (they are consistent by construction, no momentum encoder needed on that side). Queue
entries that came from the same clip as a query are masked: a clip must not be pushed away from itself.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MemoryQueue(nn.Module):
    """A FIFO of unit embeddings with the clip id each came from (``-1`` = empty slot)."""

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        self.register_buffer("keys", torch.zeros(size, dim))
        self.register_buffer("ids", torch.full((size,), -1, dtype=torch.long))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))

    @property
    def size(self) -> int:
        return self.keys.shape[0]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, ids: torch.Tensor) -> None:
        n = keys.shape[0]
        if n == 0 or self.size == 0:
            return
        if n > self.size:
            keys, ids, n = keys[-self.size :], ids[-self.size :], self.size
        pos = (self.ptr + torch.arange(n, device=self.keys.device)) % self.size
        self.keys[pos] = keys.detach().to(self.keys)
        self.ids[pos] = ids.to(self.ids)
        self.ptr.copy_((self.ptr + n) % self.size)


def contrastive_logits(
    queries: torch.Tensor,
    keys: torch.Tensor,
    ids: torch.Tensor,
    temperature: torch.Tensor | float,
    queue: MemoryQueue | None = None,
) -> torch.Tensor:
    """Logits of each query against the batch's keys (positive on the diagonal) and the queue.

    Off-diagonal batch keys and queue entries with the query's own clip id are set to ``-inf``.
    """
    logits = queries @ keys.T
    same = ids[:, None] == ids[None, :]
    same.fill_diagonal_(False)
    logits = logits.masked_fill(same, float("-inf"))
    if queue is not None and queue.size > 0:
        q_logits = queries @ queue.keys.T.to(queries)
        invalid = (queue.ids[None, :] == ids[:, None]) | (queue.ids[None, :] < 0)
        logits = torch.cat([logits, q_logits.masked_fill(invalid, float("-inf"))], dim=1)
    return logits / temperature


def info_nce(
    queries: torch.Tensor,
    keys: torch.Tensor,
    ids: torch.Tensor,
    temperature: torch.Tensor | float,
    queue: MemoryQueue | None = None,
) -> torch.Tensor:
    logits = contrastive_logits(queries, keys, ids, temperature, queue)
    return F.cross_entropy(logits, torch.arange(queries.shape[0], device=queries.device))


def clip_loss(audio: torch.Tensor, images: torch.Tensor, ids: torch.Tensor, temperature: torch.Tensor | float) -> torch.Tensor:
    """Plain in-batch symmetric InfoNCE (CLIP), with same-clip duplicates masked."""
    return 0.5 * (info_nce(audio, images, ids, temperature) + info_nce(images, audio, ids, temperature))


class Temperature(nn.Module):
    """A fixed or learnable softmax temperature (learnt in log space, clamped to [0.01, 1])."""

    def __init__(self, init: float = 0.07, learnable: bool = False) -> None:
        super().__init__()
        log_t = torch.tensor(float(init)).log()
        if learnable:
            self.log_t = nn.Parameter(log_t)
        else:
            self.register_buffer("log_t", log_t)

    def forward(self) -> torch.Tensor:
        return self.log_t.exp().clamp(0.01, 1.0)


def multi_positive_clip_loss(img: torch.Tensor, txt: torch.Tensor, scale: torch.Tensor | float,
                             positive: torch.Tensor) -> torch.Tensor:
    """CLIP loss where picture i and caption j are a positive pair whenever the caption is true of the picture.

    With few concepts and many captions per concept, a batch holds each concept several times and a caption is
    true of many pictures: plain CLIP loss would push a picture away from every other true caption in its
    batch. The target of each row (and column) is spread over its true partners instead; with one positive per
    row it is CLIP's loss.
    """
    logits = scale * img @ txt.T
    pos = positive.float()
    i2t = -(pos / pos.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    t2i = -(pos.T / pos.T.sum(1, keepdim=True) * logits.T.log_softmax(1)).sum(1).mean()
    return 0.5 * (i2t + t2i)
