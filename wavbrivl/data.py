"""Paired audio-image data: manifests (CSV or JSONL) and video ingest.

A manifest row pairs one audio clip with one or more images (frames of the same clip, ``|``-separated)
and optional ``caption``, ``label`` and ``split``; other columns are kept as metadata. Relative paths
are resolved against the manifest's folder, so a dataset folder can be moved or shared as a whole.
"""
from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .audio import AudioError, check_not_silent, decode_with_av, load_audio
from .images import ImageError, load_image

log = logging.getLogger(__name__)


@dataclass
class PairedRow:
    audio: Path
    images: list[Path]
    caption: str = ""
    label: str = ""
    split: str = ""
    meta: dict[str, str] = field(default_factory=dict)
    line: int = 0  # 1-based row number in the manifest, for error messages


@dataclass
class Skipped:
    """A row that could not be used, and why."""

    path: str
    reason: str


def read_manifest(path: str | Path) -> list[PairedRow]:
    """Read a CSV or JSONL manifest. Missing required columns are an error; file problems are not checked here."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found")
    root = path.parent
    if path.suffix.lower() in (".jsonl", ".json"):
        records = []
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{n}: invalid JSON ({exc})") from None
    else:
        with open(path, newline="") as f:
            records = list(csv.DictReader(f))
    if not records:
        raise ValueError(f"{path}: manifest has no rows")
    missing = {"audio", "image"} - set(records[0])
    if missing:
        raise ValueError(f"{path}: manifest lacks column(s) {', '.join(sorted(missing))} (needs audio, image)")
    rows = []
    for n, rec in enumerate(records, start=2 if path.suffix.lower() == ".csv" else 1):
        rec = {k: ("" if v is None else str(v)) for k, v in rec.items()}
        images = [root / p.strip() for p in rec["image"].split("|") if p.strip()]
        rows.append(PairedRow(
            audio=root / rec["audio"].strip(),
            images=images,
            caption=rec.get("caption", ""),
            label=rec.get("label", ""),
            split=rec.get("split", ""),
            meta={k: v for k, v in rec.items() if k not in ("audio", "image", "caption", "label", "split")},
            line=n,
        ))
    return rows


def split_names(splits: str | None) -> set[str]:
    """``"train,val"`` -> ``{"train", "val"}``; empty for ``None`` / ``""``."""
    return {name.strip() for name in (splits or "").split(",") if name.strip()}


def select_split(rows: Iterable[PairedRow], split: str | None) -> list[PairedRow]:
    """Rows of one split, or of several named with commas (``"train,val"``); ``None`` or ``""`` keeps all rows."""
    wanted = split_names(split)
    return [r for r in rows if not wanted or r.split in wanted]


def check_images(row: PairedRow) -> str | None:
    """The reason the row's images are unusable, or None."""
    if not row.images:
        return "no image listed"
    for img in row.images:
        try:
            load_image(img)
        except ImageError as exc:
            return str(exc)
    return None


def load_waveforms(
    rows: list[PairedRow], sample_rate: int, max_seconds: float
) -> tuple[list[np.ndarray], list[PairedRow], list[Skipped]]:
    """Decode each row's audio once (first ``max_seconds`` kept) and check its images.

    Returns the waveforms, the rows they belong to, and the rows skipped with their reasons: a training or
    evaluation run goes on with the rest.
    """
    waves, kept, skipped = [], [], []
    for row in rows:
        reason = check_images(row)
        if reason is not None:
            skipped.append(Skipped(str(row.images[0] if row.images else row.audio), reason))
            continue
        try:
            wave = load_audio(row.audio, sample_rate, max_seconds=None)[: int(max_seconds * sample_rate)].numpy()
            check_not_silent(str(row.audio), float(np.abs(wave).max()))
        except AudioError as exc:
            skipped.append(Skipped(str(row.audio), str(exc)))
            continue
        waves.append(wave)
        kept.append(row)
    for s in skipped:
        log.warning("skipped %s: %s", s.path, s.reason)
    return waves, kept, skipped


# ------------------------------------------------------------------------------------------------ videos
VIDEO_SUFFIXES = {".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v"}


def prepare_videos(
    video_dir: str | Path, out_dir: str | Path, *, frames: int = 3, sample_rate: int = 16000, image_size: int | None = None
) -> tuple[Path, list[Skipped]]:
    """Extract each video's audio track (wav) and ``frames`` evenly spaced frames (png); write a manifest.

    Uses PyAV (the ``av`` wheel bundles FFmpeg's libraries, so no system package is needed). Videos that
    cannot be decoded or have no audio track are reported and skipped.
    """
    import av
    import soundfile as sf

    video_dir, out = Path(video_dir), Path(out_dir)
    if not video_dir.is_dir():
        raise FileNotFoundError(f"{video_dir}: not a folder of videos")
    (out / "audio").mkdir(parents=True, exist_ok=True)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    videos = sorted(p for p in video_dir.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    rows: list[dict[str, Any]] = []
    skipped: list[Skipped] = []
    for video in videos:
        stem = video.relative_to(video_dir).with_suffix("").as_posix().replace("/", "__")
        try:
            audio, images = _decode_video(video, frames, sample_rate, av)
        except Exception as exc:  # PyAV raises many error types; each becomes one reported skip
            skipped.append(Skipped(str(video), f"{video}: cannot decode ({type(exc).__name__}: {exc})"))
            continue
        if audio is None or audio.size == 0:
            skipped.append(Skipped(str(video), f"{video}: has no audio track"))
            continue
        if not images:
            skipped.append(Skipped(str(video), f"{video}: has no video frames"))
            continue
        sf.write(out / "audio" / f"{stem}.wav", audio, sample_rate, subtype="PCM_16")
        names = []
        for k, img in enumerate(images):
            if image_size:
                img = img.resize((image_size, image_size))
            name = f"frames/{stem}_{k}.png"
            img.save(out / name)
            names.append(name)
        rows.append({"audio": f"audio/{stem}.wav", "image": "|".join(names), "caption": "", "label": video.parent.name,
                     "split": "", "source": str(video)})
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["audio", "image", "caption", "label", "split", "source"])
        writer.writeheader()
        writer.writerows(rows)
    for s in skipped:
        log.warning("skipped %s", s.reason)
    return manifest, skipped


def _decode_video(path: Path, frames: int, sample_rate: int, av: Any):
    with av.open(str(path)) as container:
        has_audio = bool(container.streams.audio)
    if not has_audio:
        return None, []
    audio = decode_with_av(str(path), str(path), sample_rate=sample_rate)[1]
    with av.open(str(path)) as container:
        if not container.streams.video:
            return audio, []
        decoded = [f.to_image() for f in container.decode(video=0)]
    if not decoded:
        return audio, []
    if len(decoded) > frames:
        picks = np.linspace(0, len(decoded) - 1, num=min(frames, len(decoded)) + 2)[1:-1]
    else:
        picks = np.arange(len(decoded))
    return audio, [decoded[int(round(i))] for i in picks]
