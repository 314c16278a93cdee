"""A bundle's own training pairs (``pairs/``): the sounds and pictures its audio head learnt from, shipped inside it.

Why: a bundle's audio head is tied to one frozen image–text space. With its training pairs beside it, the
head can be trained again into another space (``wavbrivl retarget``) without the original dataset, its
downloads or its world builder. The folder is an ordinary training manifest, so the project's ``Trainer``
reads it as it is (``TrainConfig(manifest=str(pairs.manifest))``)::

    pairs/
        manifest.csv    audio, image (several pictures joined by "|"), caption, label, split (train/val/test),
                        source, package, licence; paths relative to this folder
        audio/NNNNN-<name>.ogg      mono Ogg Vorbis at the trunk's sample rate, or Ogg Opus at the nearest
                                    rate Opus allows at or above it (8, 12, 16, 24 or 48 kHz)
        images/<sha256[:16]>.png    each distinct picture once, optionally downsized to fit a square
        pairs.json      format, counts per split, sizes, codec and sample rate, licences summary, the rows
                        skipped while writing, and the bundle's training recipe (``train_recipe``: the
                        ``TrainConfig`` options its head was trained with, as data)

Recordings are re-encoded compressed, quality set by libsndfile's compression level (Vorbis at 0.6 is Vorbis
quality 0.4). Opus keeps a clip's embedding as well as Vorbis does in fewer bytes (docs/EXPERIMENTS.md, "Training
pairs: Opus or Vorbis"), so a bundle with a size budget uses Opus. A row whose audio or pictures cannot be read
is reported and skipped; the rest are written.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import soundfile as sf
from PIL import Image

from .audio import AudioError, check_not_silent, load_audio
from .cache import file_sha256
from .data import PairedRow, Skipped, read_manifest
from .images import ImageError, load_image

log = logging.getLogger(__name__)

PAIRS_DIR = "pairs"
MANIFEST_NAME = "manifest.csv"
INFO_NAME = "pairs.json"
PAIRS_FORMAT = "wavbrivl-pairs"
PAIRS_VERSION = 1
COLUMNS = ("audio", "image", "caption", "label", "split", "source", "package", "licence")
SPLITS = ("train", "val", "test")
#: libsndfile's compression level for Vorbis (0 best, 1 smallest; Vorbis quality = 1 - level).
DEFAULT_COMPRESSION = 0.6
CODECS = {"vorbis": "VORBIS", "opus": "OPUS"}
OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


def codec_rate(codec: str, sample_rate: int) -> int:
    """The rate a clip is stored at: the trunk's for Vorbis, the nearest Opus rate at or above it for Opus (the
    loader resamples to the trunk's rate either way)."""
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {', '.join(CODECS)}, not {codec!r}")
    if codec == "opus":
        return next((r for r in OPUS_RATES if r >= sample_rate), OPUS_RATES[-1])
    return sample_rate


class PairsError(ValueError):
    """A ``pairs/`` folder that cannot be used; the message names the file."""


@dataclass
class TrainingPairs:
    """A bundle's ``pairs/`` folder, read: where its manifest is, and what ``pairs.json`` says about it."""

    root: Path
    info: dict[str, Any]

    @property
    def manifest(self) -> Path:
        """The manifest to train on: ``TrainConfig(manifest=str(pairs.manifest))``."""
        return self.root / MANIFEST_NAME

    @property
    def rows(self) -> list[PairedRow]:
        """The manifest's rows, paths resolved against the folder (as the trainer reads them)."""
        return read_manifest(self.manifest)

    @property
    def train_recipe(self) -> dict[str, Any]:
        """The ``TrainConfig`` options the bundle's head was trained with (empty when the bundle recorded none)."""
        return dict(self.info.get("train_recipe") or {})

    def split(self, name: str) -> list[PairedRow]:
        return [r for r in self.rows if r.split == name]

    @classmethod
    def load(cls, folder: str | os.PathLike) -> "TrainingPairs":
        """Read and check a ``pairs/`` folder; problems name the file."""
        root = Path(folder)
        info_path, manifest = root / INFO_NAME, root / MANIFEST_NAME
        for path in (info_path, manifest):
            if not path.is_file():
                raise PairsError(f"{path}: missing; a pairs folder holds {MANIFEST_NAME} and {INFO_NAME}")
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise PairsError(f"{info_path}: not valid JSON ({exc})") from None
        if not isinstance(info, dict) or info.get("format") != PAIRS_FORMAT or info.get("format_version") != PAIRS_VERSION:
            raise PairsError(f"{info_path}: not a {PAIRS_FORMAT} v{PAIRS_VERSION} file")
        return cls(root, info)


def find_pairs(bundle: str | os.PathLike | None) -> TrainingPairs | None:
    """The training pairs a bundle folder carries, or None when it has no ``pairs/``."""
    if bundle is None or not (Path(bundle) / PAIRS_DIR).is_dir():
        return None
    return TrainingPairs.load(Path(bundle) / PAIRS_DIR)


@dataclass
class PairsReport:
    """What :func:`write_pairs` wrote: the folder, its ``pairs.json`` content, and the rows it skipped."""

    root: Path
    info: dict[str, Any]
    skipped: list[Skipped] = field(default_factory=list)


# ------------------------------------------------------------------------------------------------ writing
def as_row(row: PairedRow | Mapping[str, Any], line: int = 0) -> PairedRow:
    """A manifest-like mapping (``audio``, ``image`` as a list or ``|``-joined, ``caption``, ``label``, ``split`` and
    any metadata) as a :class:`~wavbrivl.data.PairedRow`; a ``PairedRow`` is returned as it is."""
    if isinstance(row, PairedRow):
        return row
    images = row.get("image") or row.get("images") or []
    if isinstance(images, (str, os.PathLike)):
        images = [p for p in str(images).split("|") if p.strip()]
    known = {"audio", "image", "images", "caption", "label", "split"}
    return PairedRow(audio=Path(str(row["audio"])), images=[Path(str(p).strip()) for p in images],
                     caption=str(row.get("caption") or ""), label=str(row.get("label") or ""),
                     split=str(row.get("split") or ""),
                     meta={k: str(v) for k, v in row.items() if k not in known and v is not None}, line=line)


def write_pairs(
    rows: Iterable[PairedRow | Mapping[str, Any]],
    out_dir: str | os.PathLike,
    sample_rate: int,
    image_size: int | None = None,
    *,
    compression_level: float = DEFAULT_COMPRESSION,
    codec: str = "vorbis",
    image_colours: int | None = None,
    max_seconds: float | None = 30.0,
    train_recipe: Mapping[str, Any] | None = None,
) -> PairsReport:
    """Write training pairs into ``out_dir`` (the ``pairs/`` folder itself), replacing it whole once complete.

    ``rows``: manifest-like rows with absolute (or working-directory-relative) source paths. Audio is decoded,
    mixed to mono, resampled to ``sample_rate`` (the trunk's), cut to ``max_seconds`` (the trainer keeps no
    more) and written as Ogg Vorbis or Opus (``codec``, :func:`codec_rate`); pictures are written as PNG, each
    distinct file once, downsized to fit ``image_size`` pixels when given (never enlarged) and reduced to a
    palette of ``image_colours`` when given (a drawing's few colours fit a palette). A row whose audio or
    pictures cannot be read is reported (logged and listed in ``pairs.json``) and skipped. ``train_recipe``
    (``TrainConfig`` options) is stored in ``pairs.json`` so the head can be trained again the same way.
    """
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        rate = codec_rate(codec, sample_rate)  # the rate clips are stored at; an unknown codec is refused before any work
        report = _write_into(tmp, [as_row(r, i + 1) for i, r in enumerate(rows)], rate, image_size,
                             compression_level, max_seconds, dict(train_recipe or {}), codec, image_colours)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.root = out
    return report


def _write_into(root: Path, rows: list[PairedRow], sample_rate: int, image_size: int | None, level: float,
                max_seconds: float | None, recipe: dict[str, Any], codec: str, colours: int | None) -> PairsReport:
    """Write the pairs into ``root``; ``sample_rate`` is the rate clips are stored at (:func:`codec_rate`)."""
    if not 0.0 <= level <= 1.0:
        raise ValueError(f"compression_level must be in [0, 1], not {level}")
    (root / "audio").mkdir()
    (root / "images").mkdir()
    written: list[dict[str, str]] = []
    skipped: list[Skipped] = []
    pictures: dict[str, str] = {}  # source content hash -> written name
    seconds = 0.0
    for number, row in enumerate(rows):
        if row.split and row.split not in SPLITS:
            skipped.append(Skipped(str(row.audio), f"{row.audio}: split {row.split!r} is not one of {', '.join(SPLITS)}"))
            continue
        known = dict(pictures)
        try:
            names = [_write_picture(root, path, image_size, pictures, colours) for path in row.images]
            if not names:
                raise ImageError(f"{row.audio}: the row lists no picture")
            audio_name, length = _write_audio(root, row.audio, number, sample_rate, level, max_seconds,
                                              codec)
        except (AudioError, ImageError, OSError) as exc:
            for digest in set(pictures) - set(known):  # pictures only this row had brought
                (root / pictures.pop(digest)).unlink(missing_ok=True)
            skipped.append(Skipped(str(row.audio), str(exc)))
            log.warning("pairs: skipped row %d: %s", row.line, exc)
            continue
        seconds += length
        written.append({"audio": audio_name, "image": "|".join(names), "caption": row.caption, "label": row.label,
                        "split": row.split, **{c: row.meta.get(c, "") for c in COLUMNS[5:]}})
    if not written:
        first = skipped[0].reason if skipped else "no rows given"
        raise ValueError(f"no training pair could be written ({first})")
    with open(root / MANIFEST_NAME, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(written)
    info = _summary(root, written, skipped, sample_rate, image_size, level, seconds, recipe, codec,
                    colours)
    (root / INFO_NAME).write_text(json.dumps(info, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return PairsReport(root, info, skipped)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:40] or "clip"


def _write_audio(root: Path, source: Path, number: int, sample_rate: int, level: float,
                 max_seconds: float | None, codec: str) -> tuple[str, float]:
    wave = load_audio(source, sample_rate, max_seconds=None).numpy()
    if max_seconds is not None:
        wave = wave[: int(max_seconds * sample_rate)]
    check_not_silent(str(source), float(np.abs(wave).max()))
    name = f"audio/{number:05d}-{_slug(source.stem)}.ogg"
    sf.write(root / name, np.clip(wave, -1.0, 1.0), sample_rate, format="OGG", subtype=CODECS[codec],
             compression_level=level)
    return name, wave.size / sample_rate


def _write_picture(root: Path, source: Path, size: int | None, written: dict[str, str], colours: int | None = None) -> str:
    digest = file_sha256(source) if source.is_file() else ""
    if digest in written:
        return written[digest]
    img: Image.Image = load_image(source)  # ImageError naming the file when missing or undecodable
    if size:
        img.thumbnail((size, size), Image.Resampling.LANCZOS)
    if colours:
        img = img.convert("RGB").quantize(colours, method=Image.Quantize.MEDIANCUT)
    name = f"images/{digest[:16]}.png"
    img.save(root / name, format="PNG", optimize=True)
    written[digest] = name
    return name


def _summary(root: Path, rows: list[dict[str, str]], skipped: list[Skipped], sample_rate: int, image_size: int | None,
             level: float, seconds: float, recipe: dict[str, Any], codec: str, colours: int | None) -> dict[str, Any]:
    """``pairs.json``: what is in the folder, what it costs, under which licences, and how the head was trained."""
    audio_bytes = sum(p.stat().st_size for p in (root / "audio").iterdir())
    image_files = list((root / "images").iterdir())
    licences: dict[str, dict[str, Any]] = {}
    for r in rows:
        entry = licences.setdefault(r["licence"] or "unknown", {"rows": 0, "packages": set()})
        entry["rows"] += 1
        if r["package"]:
            entry["packages"].add(r["package"])
    return {
        "format": PAIRS_FORMAT, "format_version": PAIRS_VERSION,
        "rows": len(rows), "splits": dict(Counter(r["split"] or "unsplit" for r in rows)),
        "labels": len({r["label"] for r in rows if r["label"]}),
        "audio": {"container": "ogg", "codec": codec, "compression_level": level, "sample_rate": sample_rate,
                  "channels": 1, "files": len(rows), "seconds": round(seconds, 3), "bytes": audio_bytes,
                  "kbit_per_s": round(audio_bytes * 8 / 1000 / seconds, 1) if seconds else None},
        "images": {"format": "png", "max_size": image_size, "palette_colours": colours, "files": len(image_files),
                   "bytes": sum(p.stat().st_size for p in image_files)},
        "licences": {name: {"rows": e["rows"], "packages": sorted(e["packages"])} for name, e in sorted(licences.items())},
        "skipped": [{"path": s.path, "reason": s.reason} for s in skipped],
        "train_recipe": recipe,
    }


def copy_pairs(pairs: TrainingPairs, out_dir: str | os.PathLike) -> Path:
    """Copy a pairs folder as it is (a re-saved or retargeted bundle keeps the pairs it can be trained from)."""
    shutil.copytree(pairs.root, out_dir)
    return Path(out_dir)

