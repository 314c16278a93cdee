"""The gallery index: images and captions embedded once by the frozen towers, searched from audio.

On-disk format (a folder)::

    index.json          header: format, version, backbone_id, embed_dim, dtype, count, and the list of
                        shards with their row counts and sha256 checksums (the source of truth)
    emb-000000.npy      [rows, embed_dim] unit embeddings (float16 or float32), one file per shard
    meta-000000.jsonl   one JSON record per row: kind (image|text), path (relative to the index folder),
                        caption, source, width, height, sha256 (of the image bytes or caption text)

Why shards: a build writes one shard per batch (temporary name, fsync, rename) and then rewrites
``index.json`` atomically, so an interrupted build loses at most the batch in flight, can be resumed by
running it again (content hashes already present are skipped), and never leaves an index that loads
half-written. Shards not listed in ``index.json`` are leftovers of a crash and are ignored; listed shards
that are missing or whose checksum differs make loading fail with the file's name.

Search is exact (one matrix product, chunked, then top-k) up to :data:`FAISS_AUTO_ROWS` rows and FAISS
(HNSW, inner product; optional ``faiss-cpu``) above, or as chosen by ``backend=``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .cache import file_sha256, text_sha256
from .images import ImageError, load_image

log = logging.getLogger(__name__)

FORMAT = "wavbrivl-index"
VERSION = 1
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
#: Above this many rows of a kind, ``backend="auto"`` uses FAISS when it is installed (see benchmarks/index.py).
FAISS_AUTO_ROWS = 200_000


class IndexFormatError(ValueError):
    """A corrupt, incomplete or incompatible index."""


@dataclass
class SearchResult:
    score: float
    kind: str
    path: str | None  # absolute path of the image, None for captions
    caption: str
    meta: dict[str, Any]


@dataclass
class BuildReport:
    added: int = 0
    already_indexed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (item, reason)


def list_images(source: str | os.PathLike | Sequence[str | os.PathLike | tuple[str | os.PathLike, str]]
                ) -> list[tuple[Path, str]]:
    """``(image path, caption)`` pairs from a folder (recursive), a manifest CSV/JSONL, or a list of paths or of
    ``(path, caption)`` pairs (an index rebuilt in another space keeps its pictures' captions)."""
    if isinstance(source, (list, tuple)):
        return [(Path(p[0]), str(p[1])) if isinstance(p, tuple) else (Path(p), "") for p in source]
    path = Path(source)
    if path.is_dir():
        return [(p, "") for p in sorted(path.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES]
    if path.is_file():
        # A gallery manifest needs only an ``image`` column (``|``-separated frames allowed) and may have ``caption``.
        if path.suffix.lower() in (".jsonl", ".json"):
            records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        else:
            import csv

            with open(path, newline="") as f:
                records = list(csv.DictReader(f))
        if records and "image" not in records[0]:
            raise ValueError(f"{path}: manifest lacks an 'image' column")
        return [(path.parent / p.strip(), str(r.get("caption") or ""))
                for r in records for p in str(r["image"]).split("|") if p.strip()]
    raise FileNotFoundError(f"{path}: no such image folder or manifest")


def read_captions(source: str | os.PathLike | Sequence[str]) -> list[str]:
    if isinstance(source, (list, tuple)):
        return [str(c) for c in source if str(c).strip()]
    return [line.strip() for line in Path(source).read_text().splitlines() if line.strip()]


class GalleryIndex:
    """A loaded index: per-kind embedding matrices and metadata, and search over them."""

    def __init__(self, root: Path, header: dict[str, Any], emb: np.ndarray, meta: list[dict[str, Any]]) -> None:
        self.root = root
        self.header = header
        self.meta = meta
        self._emb_all = emb
        self._by_kind: dict[str, np.ndarray] = {}
        self._faiss: dict[str, Any] = {}
        kinds = np.array([m["kind"] for m in meta]) if meta else np.array([], dtype=str)
        for kind in ("image", "text"):
            rows = np.flatnonzero(kinds == kind)
            self._by_kind[kind] = rows
        self._tensors: dict[str | None, tuple[torch.Tensor, np.ndarray]] = {}

    # ------------------------------------------------------------------ properties
    @property
    def backbone_id(self) -> str:
        return self.header["backbone_id"]

    @property
    def embed_dim(self) -> int:
        return int(self.header["embed_dim"])

    def __len__(self) -> int:
        return len(self.meta)

    def count(self, kind: str | None = None) -> int:
        return len(self.meta) if kind is None else len(self._by_kind.get(kind, []))

    def embeddings(self, kind: str = "image") -> tuple[np.ndarray, list[dict[str, Any]]]:
        """The stored unit embeddings of one kind ``[N, D]`` and their metadata records, in index order."""
        rows = self._by_kind.get(kind)
        if rows is None:
            raise ValueError(f"kind must be 'image' or 'text', not {kind!r}")
        return np.asarray(self._emb_all[rows]), [self.meta[int(i)] for i in rows]

    def check_compatible(self, model: Any) -> None:
        """Refuse a model from another embedding space (the scores would be meaningless)."""
        if model.backbone_id != self.backbone_id or model.embed_dim != self.embed_dim:
            raise IndexFormatError(
                f"index {self.root} was built in embedding space {self.backbone_id!r} ({self.embed_dim}-d) "
                f"but the model embeds into {model.backbone_id!r} ({model.embed_dim}-d); rebuild the index with "
                "this checkpoint (wavbrivl index build) or use the checkpoint it was built with"
            )

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: str | os.PathLike, *, verify: bool = True) -> "GalleryIndex":
        root = Path(path)
        header_path = root / "index.json"
        if not header_path.is_file():
            raise FileNotFoundError(f"{root}: not a gallery index (no index.json)")
        try:
            header = json.loads(header_path.read_text())
        except json.JSONDecodeError as exc:
            raise IndexFormatError(f"{header_path}: corrupt header ({exc})") from None
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            raise IndexFormatError(f"{header_path}: not a {FORMAT} v{VERSION} index")
        dim, dtype = int(header["embed_dim"]), np.dtype(header["dtype"])
        blocks, meta = [], []
        for shard in header["shards"]:
            emb_path, meta_path = root / shard["emb"], root / shard["meta"]
            for p in (emb_path, meta_path):
                if not p.is_file():
                    raise IndexFormatError(f"{p}: missing index file (listed in index.json)")
            if verify and _shard_digest(emb_path, meta_path) != shard["sha256"]:
                raise IndexFormatError(f"{emb_path}: checksum mismatch: the index file is corrupt or truncated; "
                                       "rebuild the index")
            try:
                emb = np.load(emb_path, mmap_mode="r")
            except ValueError as exc:
                raise IndexFormatError(f"{emb_path}: unreadable embeddings ({exc})") from None
            records = [json.loads(line) for line in meta_path.read_text().splitlines() if line.strip()]
            if emb.shape != (shard["rows"], dim) or emb.dtype != dtype or len(records) != shard["rows"]:
                raise IndexFormatError(f"{emb_path}: holds {emb.shape} {emb.dtype}, "
                                       f"index.json says ({shard['rows']}, {dim}) {dtype}")
            blocks.append(np.asarray(emb))
            meta.extend(records)
        emb_all = np.concatenate(blocks) if blocks else np.zeros((0, dim), dtype)
        return cls(root, header, emb_all, meta)

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        model: Any,
        out_dir: str | os.PathLike,
        *,
        images: str | os.PathLike | Sequence[str | os.PathLike | tuple[str | os.PathLike, str]] | None = None,
        captions: str | os.PathLike | Sequence[str] | None = None,
        dtype: str = "float16",
        batch_size: int = 64,
        progress: bool = True,
    ) -> tuple["GalleryIndex", BuildReport]:
        """Create an index, or add to (resume) an existing one in ``out_dir``; returns it and a report."""
        root = Path(out_dir)
        root.mkdir(parents=True, exist_ok=True)
        if (root / "index.json").is_file():
            index = cls.load(root)
            index.check_compatible(model)
            header = index.header
            known = {m["sha256"] for m in index.meta}
        else:
            header = {"format": FORMAT, "version": VERSION, "backbone_id": model.backbone_id,
                      "embed_dim": model.embed_dim, "dtype": np.dtype(dtype).name, "count": 0, "shards": []}
            known = set()
        report = BuildReport()
        pending: list[tuple[Any, dict[str, Any]]] = []

        def flush(kind: str) -> None:
            if not pending:
                return
            if kind == "image":
                emb = model.embed_image([p[0] for p in pending], batch_size=batch_size)
            else:
                emb = model.embed_text([p[0] for p in pending])
            _write_shard(root, header, emb.numpy(), [p[1] for p in pending])
            report.added += len(pending)
            pending.clear()

        if images is not None:
            for row in _new_images(images, root, known, report, progress):
                pending.append(row)
                if len(pending) >= batch_size:
                    flush("image")
            flush("image")
        if captions is not None:
            for row in _new_captions(captions, root, known, report, progress):
                pending.append(row)
                if len(pending) >= 256:
                    flush("text")
            flush("text")
        for _item, reason in report.skipped:
            log.warning("skipped %s", reason)
        return cls.load(root), report

    def export(self, out_dir: str | os.PathLike) -> "GalleryIndex":
        """A self-contained copy in ``out_dir``: the same rows, with every picture copied into ``out_dir/images``
        (so a bundle folder holding it can be moved, shared or uploaded as a whole)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        records = []
        for m in self.meta:
            record = dict(m)
            if record.get("path"):
                src = self.root / record["path"]
                if not src.is_file():
                    raise IndexFormatError(f"{src}: picture listed in index {self.root} is missing; cannot export it")
                record["path"] = f"images/{record['sha256'][:20]}{src.suffix.lower()}"
                (out / "images").mkdir(exist_ok=True)
                shutil.copyfile(src, out / record["path"])
            records.append(record)
        header = {**self.header, "count": 0, "shards": []}
        if records:
            _write_shard(out, header, np.asarray(self._emb_all), records)
        else:
            _atomic_write(out / "index.json", (json.dumps(header, indent=1) + "\n").encode())
        return GalleryIndex.load(out)

    # ------------------------------------------------------------------ search
    def _matrix(self, kind: str | None) -> tuple[torch.Tensor, np.ndarray]:
        if kind not in self._tensors:
            rows = np.arange(len(self.meta)) if kind is None else self._by_kind.get(kind, np.zeros(0, int))
            if kind is not None and kind not in self._by_kind:
                raise ValueError(f"kind must be 'image', 'text' or None, not {kind!r}")
            block = self._emb_all if kind is None else self._emb_all[rows]
            self._tensors[kind] = (torch.from_numpy(np.ascontiguousarray(block)), rows)
        return self._tensors[kind]

    def search(
        self,
        queries: torch.Tensor | np.ndarray,
        k: int = 8,
        *,
        kind: str | None = "image",
        backend: str = "auto",
    ) -> list[list[SearchResult]]:
        """Top-``k`` gallery items for each query embedding (``[D]`` or ``[Q, D]``), best first."""
        q = torch.as_tensor(np.asarray(queries, dtype=np.float32)).reshape(-1, np.shape(queries)[-1])
        if q.shape[1] != self.embed_dim:
            raise IndexFormatError(f"query embeddings are {q.shape[1]}-d but index {self.root} is {self.embed_dim}-d "
                                   f"({self.backbone_id})")
        q = torch.nn.functional.normalize(q, dim=-1)
        matrix, rows = self._matrix(kind)
        if matrix.shape[0] == 0:
            return [[] for _ in range(q.shape[0])]
        k = min(k, matrix.shape[0])
        if backend == "auto":
            backend = "faiss" if matrix.shape[0] > FAISS_AUTO_ROWS and _faiss_available() else "exact"
        if backend == "exact":
            scores, idx = exact_topk(matrix, q, k)
        elif backend == "faiss":
            scores, idx = self._faiss_search(kind, matrix, q, k)
        else:
            raise ValueError(f"backend must be 'auto', 'exact' or 'faiss', not {backend!r}")
        out = []
        for srow, irow in zip(scores.tolist(), idx.tolist()):
            results = []
            for s, i in zip(srow, irow):
                if i < 0:
                    continue
                m = self.meta[int(rows[i])]
                path = str((self.root / m["path"]).resolve()) if m.get("path") else None
                results.append(SearchResult(float(s), m["kind"], path, m.get("caption", ""), m))
            out.append(results)
        return out

    def _faiss_search(self, kind: str | None, matrix: torch.Tensor, q: torch.Tensor, k: int):
        if kind not in self._faiss:
            self._faiss[kind] = build_faiss(matrix.float().numpy())
        scores, idx = self._faiss[kind].search(q.numpy(), k)
        return torch.from_numpy(scores), torch.from_numpy(idx)


def exact_topk(matrix: torch.Tensor, q: torch.Tensor, k: int, chunk: int = 262_144) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact cosine top-k: chunked matrix products in the storage precision (bounded memory).

    float16 storage is multiplied in float16 (upcasting a 1M-row chunk first was 5x slower than the
    product itself); scores are compared in float32.
    """
    best_s = torch.full((q.shape[0], 0), float("-inf"))
    best_i = torch.zeros((q.shape[0], 0), dtype=torch.long)
    for start in range(0, matrix.shape[0], chunk):
        block = matrix[start : start + chunk]
        scores = (q.to(block.dtype) @ block.T).float()
        s, i = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        best_s, order = torch.topk(torch.cat([best_s, s], dim=1), min(k, best_s.shape[1] + s.shape[1]), dim=1)
        best_i = torch.gather(torch.cat([best_i, i + start], dim=1), 1, order)
    return best_s, best_i


def _faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def build_faiss(vectors: np.ndarray, m: int = 32, ef_search: int = 512):
    """An HNSW inner-product index (cosine on unit vectors) over ``vectors``.

    ``ef_search=512`` keeps recall@10 >= 0.95 even on structureless random vectors (the worst case);
    real embeddings are clustered and reach ~1.0 (benchmarks/index.py measures both).
    """
    try:
        import faiss
    except ImportError:
        raise RuntimeError("backend='faiss' needs the optional faiss-cpu package: pip install 'wavbrivl[faiss]'") from None
    index = faiss.IndexHNSWFlat(vectors.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    index.hnsw.efSearch = ef_search
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def _relative_source(source: Any, root: Path) -> str:
    """Where a build's items came from, relative to the index (as item paths are): a bundle carries no path of the
    machine that built it, and still says which manifest or folder fed it. Lists of items have no source."""
    if source is None or isinstance(source, (list, tuple)):
        return ""
    return os.path.relpath(Path(source).resolve(), root.resolve())


def _shard_digest(emb_path: Path, meta_path: Path) -> str:
    h = hashlib.sha256()
    for p in (emb_path, meta_path):
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
    return h.hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _new_images(images: Any, root: Path, known: set[str], report: BuildReport,
                progress: bool) -> Iterator[tuple[Any, dict[str, Any]]]:
    """The pictures of ``images`` not in the index yet, each loaded with its row; unreadable ones go to ``report``.
    Lazy, so a build holds one batch of pictures at a time; ``known`` grows as they are yielded."""
    for path, caption in tqdm(list_images(images), desc="indexing images", unit="img", disable=not progress):
        try:
            digest = file_sha256(path)
        except OSError as exc:
            report.skipped.append((str(path), f"{path}: cannot read ({exc.strerror})"))
            continue
        if digest in known:
            report.already_indexed += 1
            continue
        try:
            img = load_image(path)
        except ImageError as exc:
            report.skipped.append((str(path), str(exc)))
            continue
        known.add(digest)
        rel = os.path.relpath(Path(path).resolve(), root.resolve())
        yield img, {"kind": "image", "path": rel, "caption": caption, "source": _relative_source(images, root),
                    "width": img.width, "height": img.height, "sha256": digest}


def _new_captions(captions: Any, root: Path, known: set[str], report: BuildReport,
                  progress: bool) -> Iterator[tuple[str, dict[str, Any]]]:
    """The captions of ``captions`` not in the index yet, each with its row (``known`` grows as they are yielded)."""
    for text in tqdm(read_captions(captions), desc="indexing captions", unit="text", disable=not progress):
        digest = text_sha256(text)
        if digest in known:
            report.already_indexed += 1
            continue
        known.add(digest)
        yield text, {"kind": "text", "path": None, "caption": text, "source": _relative_source(captions, root),
                     "width": None, "height": None, "sha256": digest}


def _write_shard(root: Path, header: dict[str, Any], emb: np.ndarray, records: list[dict[str, Any]]) -> None:
    """Write one shard and then the header that lists it (the header is the commit point)."""
    number = max([int(s["emb"][4:10]) for s in header["shards"]], default=-1) + 1
    emb_name, meta_name = f"emb-{number:06d}.npy", f"meta-{number:06d}.jsonl"
    import io

    buf = io.BytesIO()
    np.save(buf, emb.astype(header["dtype"]))
    _atomic_write(root / emb_name, buf.getvalue())
    _atomic_write(root / meta_name, "".join(json.dumps(r) + "\n" for r in records).encode())
    header["shards"].append({"emb": emb_name, "meta": meta_name, "rows": len(records),
                             "sha256": _shard_digest(root / emb_name, root / meta_name)})
    header["count"] = sum(s["rows"] for s in header["shards"])
    _atomic_write(root / "index.json", (json.dumps(header, indent=1) + "\n").encode())
