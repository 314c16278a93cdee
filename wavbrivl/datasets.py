"""Evaluation datasets: ESC-50, UrbanSound8K, the project's manifests and folder-per-class trees.

Every reader returns the same :class:`EvalDataset` (a list of :class:`EvalRow`), so the evaluation code
never knows which layout it came from. The official cross-validation folds travel with the rows
(``fold``): published numbers on ESC-50 and UrbanSound8K are only comparable when the folds are the
official ones, because clips cut from the same recording share a fold and must never be split across
train and test.

Layouts (auto-detected from the path, or named with ``layout=``):

============  =================================================================================
``esc50``     ``ROOT/audio/*.wav`` + ``ROOT/meta/esc50.csv`` (filename, fold, target, category)
``us8k``      ``ROOT/audio/foldN/*.wav`` + ``ROOT/metadata/UrbanSound8K.csv`` (slice_file_name, fold,
              classID, class)
``manifest``  a CSV/JSONL manifest (audio, image, caption, label, split + extra columns), see
              :func:`wavbrivl.data.read_manifest`; a ``fold`` column, if present, gives the CV folds
``folders``   ``ROOT/<class name>/**/*.wav`` (any audio format soundfile reads)
============  =================================================================================
"""
from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .data import read_manifest

LAYOUTS = ("esc50", "us8k", "manifest", "folders")
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus"}
#: Columns every row has as attributes; any other name is looked up in ``meta``.
ROW_FIELDS = ("label", "caption", "split", "fold")


@dataclass
class EvalRow:
    """One clip. ``fold`` is an official cross-validation fold ("" when none); ``split`` a named split."""

    audio: Path
    label: str
    fold: str = ""
    split: str = ""
    images: list[Path] = field(default_factory=list)
    caption: str = ""
    meta: dict[str, str] = field(default_factory=dict)

    def value(self, column: str) -> str:
        """The row's value in a column (a built-in field or an extra metadata column); "" when absent."""
        if column in ROW_FIELDS:
            return str(getattr(self, column))
        return self.meta.get(column, "")


@dataclass
class EvalDataset:
    name: str
    layout: str
    root: Path  # what relative paths in the report are relative to
    rows: list[EvalRow]
    source: Path  # the path the user gave
    has_official_folds: bool = False

    def __len__(self) -> int:
        return len(self.rows)

    def columns(self) -> list[str]:
        """Columns usable as labels or groups: the built-in fields plus every metadata column."""
        extra = sorted({k for r in self.rows for k in r.meta})
        return list(ROW_FIELDS) + [c for c in extra if c not in ROW_FIELDS]

    def check_column(self, column: str) -> None:
        if column not in self.columns():
            raise ValueError(f"{self.source}: no column {column!r} (available: {', '.join(self.columns())})")

    def select_split(self, split: str | None) -> "EvalDataset":
        """The rows of one named split; None keeps everything. Unknown split names are an error, not empty."""
        if not split:
            return self
        splits = sorted({r.split for r in self.rows if r.split})
        if split not in splits:
            have = ", ".join(splits) if splits else "none: this dataset has no split column"
            raise ValueError(f"{self.source}: no rows in split {split!r} (splits: {have})")
        rows = [r for r in self.rows if r.split == split]
        return EvalDataset(self.name, self.layout, self.root, rows, self.source, self.has_official_folds)

    def fingerprint(self) -> dict[str, object]:
        """A hash of the file list and sizes: two reports with the same hash were computed on the same files.

        Sizes (not contents) keep this cheap on tens of thousands of clips while still catching a
        re-encoded, truncated or swapped file set.
        """
        h = hashlib.sha256()
        files = sorted({p for r in self.rows for p in (r.audio, *r.images)})
        for p in files:
            try:
                size = os.stat(p).st_size
            except OSError:
                size = -1
            h.update(f"{_relative(p, self.root)}\t{size}\n".encode())
        for r in self.rows:  # labels and folds are part of what was evaluated
            h.update(f"{_relative(r.audio, self.root)}\t{r.label}\t{r.fold}\t{r.split}\n".encode())
        return {"sha256": h.hexdigest(), "rows": len(self.rows), "files": len(files)}


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


# ------------------------------------------------------------------------------------------------ readers
def _read_csv(path: Path, required: Iterable[str]) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        records = list(csv.DictReader(f))
    if not records:
        raise ValueError(f"{path}: no rows")
    missing = set(required) - set(records[0])
    if missing:
        raise ValueError(f"{path}: lacks column(s) {', '.join(sorted(missing))}")
    return records


def _extra(rec: dict[str, str], used: Iterable[str]) -> dict[str, str]:
    return {k: v for k, v in rec.items() if k not in set(used) and k is not None}


def read_esc50(root: str | Path) -> EvalDataset:
    """ESC-50: the label is ``category`` (e.g. ``chirping_birds``); ``target`` and ``esc10`` stay in meta."""
    root = Path(root)
    meta = root / "meta" / "esc50.csv"
    used = ("filename", "fold", "category")
    rows = [
        EvalRow(audio=root / "audio" / rec["filename"], label=rec["category"], fold=str(rec["fold"]).strip(),
                meta=_extra(rec, used))
        for rec in _read_csv(meta, used + ("target",))
    ]
    return EvalDataset("ESC-50", "esc50", root, rows, root, has_official_folds=True)


def read_us8k(root: str | Path) -> EvalDataset:
    """UrbanSound8K: clips live in ``audio/fold<fold>/``; the label is ``class``."""
    root = Path(root)
    meta = root / "metadata" / "UrbanSound8K.csv"
    used = ("slice_file_name", "fold", "class")
    rows = []
    for rec in _read_csv(meta, used + ("classID",)):
        fold = str(rec["fold"]).strip()
        rows.append(EvalRow(audio=root / "audio" / f"fold{fold}" / rec["slice_file_name"], label=rec["class"], fold=fold,
                            meta=_extra(rec, used)))
    return EvalDataset("UrbanSound8K", "us8k", root, rows, root, has_official_folds=True)


def read_manifest_dataset(path: str | Path) -> EvalDataset:
    """A project manifest; paths are relative to its folder. A ``fold`` column becomes the CV folds."""
    path = Path(path)
    rows = []
    for r in read_manifest(path):
        meta = dict(r.meta)
        fold = meta.pop("fold", "").strip()
        rows.append(EvalRow(audio=r.audio, label=r.label, fold=fold, split=r.split, images=r.images, caption=r.caption,
                            meta=meta))
    has_folds = bool(rows) and all(r.fold for r in rows)
    return EvalDataset(path.stem, "manifest", path.parent, rows, path, has_official_folds=has_folds)


def read_folders(root: str | Path) -> EvalDataset:
    """``ROOT/<class>/...``: every audio file below a class folder is a clip of that class."""
    root = Path(root)
    rows = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(class_dir.rglob("*")):
            if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES:
                rows.append(EvalRow(audio=f, label=class_dir.name))
    if not rows:
        raise ValueError(f"{root}: no audio files ({', '.join(sorted(AUDIO_SUFFIXES))}) in any class sub-folder")
    return EvalDataset(root.name, "folders", root, rows, root)


def detect_layout(path: str | Path) -> tuple[str, Path]:
    """The layout of ``path`` and the path its reader takes (a metadata CSV resolves to its dataset root)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    if path.is_file():
        if path.name == "esc50.csv":
            return "esc50", path.parent.parent
        if path.name == "UrbanSound8K.csv":
            return "us8k", path.parent.parent
        if path.suffix.lower() in (".csv", ".jsonl", ".json"):
            return "manifest", path
        raise ValueError(f"{path}: not a manifest (.csv/.jsonl) nor a dataset folder")
    if (path / "meta" / "esc50.csv").is_file():
        return "esc50", path
    if (path / "metadata" / "UrbanSound8K.csv").is_file():
        return "us8k", path
    for name in ("manifest.csv", "manifest.jsonl"):
        if (path / name).is_file():
            return "manifest", path / name
    if any(p.is_dir() for p in path.iterdir()):
        return "folders", path
    raise ValueError(
        f"{path}: cannot tell the dataset layout (expected meta/esc50.csv, metadata/UrbanSound8K.csv, "
        "manifest.csv/.jsonl, or one sub-folder per class); pass --layout"
    )


def load_dataset(path: str | Path, layout: str | None = None) -> EvalDataset:
    """Read a dataset in any supported layout; ``layout`` overrides auto-detection."""
    path = Path(path)
    if layout in (None, "", "auto"):
        layout, path = detect_layout(path)
    elif layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} (expected one of {', '.join(LAYOUTS)})")
    elif layout == "manifest" and path.is_dir():
        layout, path = detect_layout(path)
        if layout != "manifest":
            raise ValueError(f"{path}: no manifest.csv or manifest.jsonl in this folder")
    elif layout in ("esc50", "us8k") and path.is_file():  # the metadata CSV was given: its dataset root
        path = path.parent.parent
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    reader = {"esc50": read_esc50, "us8k": read_us8k, "manifest": read_manifest_dataset, "folders": read_folders}[layout]
    try:
        return reader(path)
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{path}: not a {layout} dataset ({exc})") from None
