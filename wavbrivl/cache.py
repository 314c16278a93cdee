"""Frozen-embedding cache: the frozen towers run once per image (and caption), ever.

The backbone never changes during training, so re-encoding images every step would spend almost all of
an epoch on work whose answer is known (``benchmarks/train.py`` measures how much). Embeddings are stored
per backbone id (a new backbone gets a new folder, so a cache can never be read into the wrong space),
keyed by the sha256 of the image file's bytes (or of the caption text), in safetensors shards written to
a temporary name and renamed. Each shard carries a checksum of its tensors: a truncated or corrupted shard
fails to load or to verify, is deleted, and its entries are recomputed - never silently used.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Callable, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import save_file

log = logging.getLogger(__name__)


def file_sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _tensor_digest(emb: torch.Tensor, norms: torch.Tensor) -> str:
    return hashlib.sha256(emb.numpy().tobytes() + norms.numpy().tobytes()).hexdigest()


class EmbeddingCache:
    """Unit embeddings and raw norms for content keys, in one embedding space."""

    def __init__(self, root: str | os.PathLike, backbone_id: str, kind: str = "image") -> None:
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", backbone_id)[:60]
        self.dir = Path(root) / f"{slug}-{hashlib.sha256(backbone_id.encode()).hexdigest()[:10]}" / kind
        self.dir.mkdir(parents=True, exist_ok=True)
        self.backbone_id = backbone_id
        self._emb: dict[str, torch.Tensor] = {}
        self._norm: dict[str, float] = {}
        self._load()

    def _load(self) -> None:
        for shard in sorted(self.dir.glob("shard-*.safetensors")):
            try:
                with safe_open(str(shard), "pt") as f:
                    meta = f.metadata() or {}
                    emb, norms = f.get_tensor("embeddings"), f.get_tensor("norms")
                keys = json.loads(meta["keys"])
                if meta.get("backbone_id") != self.backbone_id:
                    raise ValueError(f"written for backbone {meta.get('backbone_id')!r}")
                if len(keys) != emb.shape[0] or meta.get("sha256") != _tensor_digest(emb, norms):
                    raise ValueError("checksum mismatch")
            except Exception as exc:
                log.warning("cache shard %s is unusable (%s): deleting it; its entries will be recomputed", shard, exc)
                shard.unlink(missing_ok=True)
                continue
            for k, e, n in zip(keys, emb, norms):
                self._emb[k] = e
                self._norm[k] = float(n)

    def __contains__(self, key: str) -> bool:
        return key in self._emb

    def __len__(self) -> int:
        return len(self._emb)

    def get(self, keys: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.stack([self._emb[k] for k in keys]), torch.tensor([self._norm[k] for k in keys])

    def put(self, keys: Sequence[str], embeddings: torch.Tensor, norms: torch.Tensor) -> None:
        """Store a batch as one new shard (atomically: temp name, fsync, rename)."""
        if not keys:
            return
        emb = embeddings.detach().float().cpu().contiguous()
        nrm = norms.detach().float().cpu().contiguous()
        index = len(list(self.dir.glob("shard-*.safetensors")))
        while (self.dir / f"shard-{index:06d}.safetensors").exists():
            index += 1
        final = self.dir / f"shard-{index:06d}.safetensors"
        tmp = final.with_suffix(".tmp")
        meta = {"keys": json.dumps(list(keys)), "backbone_id": self.backbone_id, "sha256": _tensor_digest(emb, nrm)}
        save_file({"embeddings": emb, "norms": nrm}, str(tmp), metadata=meta)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
        for k, e, n in zip(keys, emb, nrm):
            self._emb[k] = e
            self._norm[k] = float(n)


def cached_embeddings(
    cache: EmbeddingCache,
    keys: Sequence[str],
    compute: Callable[[list[int]], torch.Tensor],
    batch_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit embeddings and raw norms for ``keys``; ``compute(positions)`` (raw embeddings) runs only for misses."""
    missing = [i for i, k in enumerate(keys) if k not in cache]
    seen: set[str] = set()
    todo = [i for i in missing if not (keys[i] in seen or seen.add(keys[i]))]  # each distinct key once
    for start in range(0, len(todo), batch_size):
        part = todo[start : start + batch_size]
        raw = compute(part).float()
        norms = raw.norm(dim=-1)
        cache.put([keys[i] for i in part], raw / norms.clamp_min(1e-12)[:, None], norms)
    return cache.get(list(keys))


def image_targets(model, rows, cache_dir: str | os.PathLike, batch_size: int = 64, progress: bool = False):
    """Each row's training target: its frames' unit embeddings averaged and renormalised.

    Returns ``(targets [N, D], mean raw image-embedding norm)``; the frozen image tower runs only for images
    whose content is not in the cache yet.
    """
    from tqdm.auto import tqdm

    paths = [p for r in rows for p in r.images]
    owners = torch.tensor([i for i, r in enumerate(rows) for _ in r.images])
    keys = [file_sha256(p) for p in tqdm(paths, desc="hashing images", disable=not progress)]
    cache = EmbeddingCache(cache_dir, model.backbone_id, "image")
    emb, norms = cached_embeddings(
        cache, keys, lambda idx: model.embed_image([paths[i] for i in idx], batch_size=batch_size, normalize=False), batch_size
    )
    pooled = torch.zeros(len(rows), emb.shape[1]).index_add_(0, owners, emb)
    return torch.nn.functional.normalize(pooled, dim=-1), float(norms.mean())


def text_embeddings(model, texts: Sequence[str], cache_dir: str | os.PathLike, batch_size: int = 256) -> torch.Tensor:
    """Unit text embeddings ``[N, D]`` of ``texts``; the frozen text tower runs only for texts not in the cache yet."""
    cache = EmbeddingCache(cache_dir, model.backbone_id, "text")
    texts = list(texts)
    emb, _ = cached_embeddings(cache, [text_sha256(t) for t in texts],
                               lambda idx: model.embed_text([texts[i] for i in idx], normalize=False), batch_size)
    return emb


def missing_images(model, rows, cache_dir: str | os.PathLike) -> int:
    """How many distinct pictures of ``rows`` the cache does not hold yet for ``model``'s space (what
    :func:`image_targets` would send through the frozen tower)."""
    cache = EmbeddingCache(cache_dir, model.backbone_id, "image")
    return sum(1 for key in {file_sha256(p) for r in rows for p in r.images} if key not in cache)
