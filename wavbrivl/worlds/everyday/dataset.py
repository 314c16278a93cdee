"""Prepare step: turn the extracted package files into the world folder ``CACHE/world/``.

    audio/<concept>/<n>.wav     every concept recording: mono 44.1 kHz PCM16, silence trimmed, <= 30 s
    pictures/<concept>/<n>.png  every drawing framed 128x128 on white (see :mod:`.pictures`)
    corpus/<package>/<n>.wav    the unlabelled sound-effect corpus, decoded the same way
    manifest.csv                one row per recording (the project's manifest format, see wavbrivl.data)
    pictures.csv, corpus.csv, concepts.json, DATA.md, data_card.json, LICENSES/<package>.copyright

Splits are by independent source, so no take is heard in training and tested: a heard concept's test split
is every file of its held-out ``test_source``; concepts with >= 4 sources also hold out one more source for
validation; never-heard concepts (pictures and captions only) have all their recordings in ``test``.
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ...audio import AudioError
from ...images import ImageError
from .catalogue import concept_caption, local_path, slug
from .datacard import write_data_card
from .fetch import MARKER, say
from .pictures import prepare_picture
from .sounds import SAMPLE_RATE, decode_clip, fingerprint, similarity, typing_sequences, write_wav

MANIFEST_IMAGES = 8  # pictures listed per manifest row
GALLERY_SHARE = 0.25
TYPING = ("keyboard typing", "bucklespring-data")  # single key clips that become typing sequences
LABEL_FROM_CATALOGUE = "catalogue (chosen by package, folder and description when the catalogue was made)"
DUPLICATE_SIMILARITY = 0.8  # fingerprint similarity above which a corpus clip is a copy of a concept take


def package_versions(extracted: Path) -> dict[str, str]:
    """The version each package was actually extracted from (its fetch marker)."""
    return {m.parent.name: json.loads(m.read_text())["version"] for m in sorted(extracted.glob(f"*/{MARKER}"))}


def choose_val_source(concept: dict[str, Any]) -> str | None:
    """For >= 4 sources: the second-smallest non-test source by file count, not a SoundFont render if possible."""
    # Recordings added after vetting (``split: train``) are training material only: they never change which
    # source validates, so adding them leaves the validation and test splits as they were.
    counts = Counter(a["source"] for a in concept["audio"] if a.get("split") != "train")
    if not concept["heard"] or len(counts) < 4:
        return None
    rendered = {a["source"] for a in concept["audio"] if a["kind"] == "soundfont-render"}
    pool = [s for s in counts if s != concept["test_source"]]
    pool = [s for s in pool if s not in rendered] or pool
    ranked = sorted(pool, key=lambda s: (counts[s], s))
    return ranked[1] if len(ranked) > 1 else ranked[0]


def split_of(concept: dict[str, Any], source: str, val_source: str | None) -> str:
    if not concept["heard"] or source == concept["test_source"]:
        return "test"
    return "val" if source == val_source else "train"


def _picture_group(path: str) -> str:
    """Pictures of one emoji code point in several art styles are one group (never split between fit and gallery)."""
    m = re.search(r"(?:#U\+|/)([0-9A-F]{4,6})(?:\.svg|\.png)?$", path)
    return f"U+{m.group(1)}" if m else path


def gallery_paths(paths: list[str], share: float = GALLERY_SHARE) -> set[str]:
    """About ``share`` of a concept's pictures, whole groups, chosen by hash: never all of them (a concept's only
    drawing stays for training), at least one when there are two or more."""
    groups: dict[str, list[str]] = defaultdict(list)
    for p in paths:
        groups[_picture_group(p)].append(p)
    want = max(1, round(share * len(paths)))
    chosen: set[str] = set()
    for key in sorted(groups, key=lambda k: hashlib.sha1(k.encode()).hexdigest()):
        if len(chosen) >= want:
            break
        if len(chosen) + len(groups[key]) < len(paths):
            chosen.update(groups[key])
    if not chosen and len(paths) > 1:
        chosen.add(sorted(paths, key=lambda p: hashlib.sha1(p.encode()).hexdigest())[0])
    return chosen


def picture_captions(concept: dict[str, Any], title: str) -> list[str]:
    """Concept name, aliases, and the drawing's title when it names the concept (cleaned), without repeats."""
    names = [concept["name"], *concept["aliases"]]
    title = re.sub(r"\s+", " ", title.replace("_", " ")).strip().rstrip(".").strip()
    words = {w for n in names for w in re.findall(r"[a-z]+", n.lower()) if len(w) > 2}
    if title and words & set(re.findall(r"[a-z]+", title.lower())):
        names.append(title)
    seen, out = set(), []
    for n in names:
        if n.lower() not in seen:
            seen.add(n.lower())
            out.append(n)
    return out


class WorldWriter:
    """Writes one world folder; collects rows and skips so the data card can list every file."""

    def __init__(self, cache: Path, log: Callable[[str], None] = say) -> None:
        self.extracted = cache / "extracted"
        self.out = cache / "world"
        self.log = log
        self.versions = package_versions(self.extracted)
        self.recordings: list[dict[str, Any]] = []
        self.pictures: list[dict[str, Any]] = []
        self.corpus: list[dict[str, Any]] = []
        self.skipped: list[dict[str, str]] = []
        self.fingerprints: list[tuple[np.ndarray, np.ndarray]] = []
        self.numbers: Counter = Counter()  # next file number per folder

    def _next(self, folder: str) -> str:
        self.numbers[folder] += 1
        return f"{folder}/{self.numbers[folder] - 1}"

    def _skip(self, entry: dict[str, Any], reason: str) -> None:
        self.skipped.append({"package": entry["package"], "path": entry["path"], "reason": reason})

    def _file(self, entry: dict[str, Any]) -> Path | None:
        path = local_path(self.extracted, entry["package"], entry["path"])
        if not path.is_file():
            self._skip(entry, "not extracted (missing or damaged in the package, see fetch.json)")
            return None
        return path

    def _meta(self, entry: dict[str, Any]) -> dict[str, Any]:
        meta = {"package": entry["package"], "version": self.versions.get(entry["package"], entry["version"]),
                "licence": entry["licence"], "path": entry["path"]}
        return dict(meta, attribution=entry.get("attribution", ""))

    def _decode(self, entry: dict[str, Any], what: str) -> np.ndarray | None:
        """The entry's clip decoded by the one rule (:func:`decode_clip`), or None after recording why not."""
        path = self._file(entry)
        if path is None:
            return None
        try:
            return decode_clip(path)
        except AudioError as exc:
            self._skip(entry, f"{what}{exc.reason}: {exc.detail}")
            return None

    def add_recordings(self, concept: dict[str, Any]) -> None:
        keys: dict[str, np.ndarray] = {}
        key_entry = None
        for entry in concept["audio"]:
            wave = self._decode(entry, "")
            if wave is None:
                continue
            if (concept["name"], entry["package"]) == TYPING:
                keys[entry["path"]], key_entry = wave, entry
                continue
            self._write_recording(concept, entry, wave, entry["kind"])
        if key_entry is not None:
            derived = dict(key_entry, path=f"{Path(key_entry['path']).parent}/*.wav (typing sequence)")
            for wave in typing_sequences(keys):
                self._write_recording(concept, derived, wave, "derived: typing sequence of single key clips")

    def _write_recording(self, concept: dict[str, Any], entry: dict[str, Any], wave: np.ndarray, kind: str) -> None:
        rel = self._next(f"audio/{slug(concept['name'])}") + ".wav"
        write_wav(self.out / rel, wave)
        self.recordings.append({"audio": rel, "label": concept["name"], "heard": concept["heard"],
                                "source": entry["source"], "kind": kind,
                                "label_from": entry.get("label_from", LABEL_FROM_CATALOGUE),
                                "seconds": round(wave.size / SAMPLE_RATE, 3),
                                "md5": entry.get("md5", ""), **self._meta(entry)})
        self.fingerprints.append(fingerprint(wave))

    def drop_held_out_twins(self) -> None:
        """Drop added training recordings (vetted files, curated libraries: ``label_from`` other than the
        catalogue's) that are copies of a validation or test take: one library's dog may be another package's
        file, and training on it would hand the held-out source to the model."""
        held = [i for i, r in enumerate(self.recordings) if r["split"] in ("val", "test")]
        signatures = self._signatures(held)
        keep = []
        for i, r in enumerate(self.recordings):
            twin = None
            if r["split"] == "train" and r["label_from"] != LABEL_FROM_CATALOGUE:
                twin = self._twin(*self.fingerprints[i], held, signatures)
            if twin is None:
                keep.append(i)
                continue
            self._skip(r, f"same take as {twin['split']} recording {twin['audio']} ({twin['source']}, fingerprint): "
                          "training on it would leak a held-out source")
            (self.out / r["audio"]).unlink(missing_ok=True)
        self.recordings = [self.recordings[i] for i in keep]
        self.fingerprints = [self.fingerprints[i] for i in keep]

    def add_pictures(self, concept: dict[str, Any]) -> None:
        seen: set[str] = set()
        rows = []
        for entry in concept["pictures"]:
            path = self._file(entry)
            if path is None:
                continue
            rel = f"pictures/{slug(concept['name'])}/{len(rows)}.png"  # a duplicate's number is reused
            try:
                framed = prepare_picture(path, self.out / rel)
            except ImageError as exc:
                self._skip(entry, str(exc))
                continue
            digest = hashlib.md5(framed.tobytes()).hexdigest()
            if digest in seen:
                (self.out / rel).unlink()
                self._skip(entry, "same picture as another drawing of this concept after framing")
                continue
            seen.add(digest)
            rows.append({"image": rel, "label": concept["name"],
                         "captions": "|".join(picture_captions(concept, entry.get("title", ""))),
                         "kind": entry["kind"], "title": entry.get("title", ""), **self._meta(entry)})
        gallery = gallery_paths([r["path"] for r in rows])
        for r in rows:
            r["split"] = "gallery" if r["path"] in gallery else "fit"
        self.pictures += rows

    def add_corpus(self, entries: list[dict[str, Any]], hours: float) -> None:
        known_md5 = {r["md5"] for r in self.recordings if r["md5"]}
        every = list(range(len(self.recordings)))
        signatures = self._signatures(every)
        for entry in cap_corpus(entries, hours):
            if entry.get("md5") in known_md5:
                self._skip(entry, "corpus: same file as a concept recording (md5)")
                continue
            wave = self._decode(entry, "corpus: ")
            if wave is None:
                continue
            frames, signature = fingerprint(wave)
            twin = self._twin(frames, signature, every, signatures)
            if twin is not None:
                self._skip(entry, f"corpus: same take as concept recording {twin['audio']} (fingerprint)")
                continue
            rel = self._next(f"corpus/{entry['package']}") + ".wav"
            write_wav(self.out / rel, wave)
            self.corpus.append({"audio": rel, "seconds": round(wave.size / SAMPLE_RATE, 3), **self._meta(entry)})

    def _signatures(self, among: list[int]) -> np.ndarray:
        """The spectral signatures of the recordings ``among`` (indices), stacked for :meth:`_twin`."""
        return np.stack([self.fingerprints[i][1] for i in among]) if among else np.zeros((0, 32), np.float32)

    def _twin(self, frames: np.ndarray, signature: np.ndarray, among: list[int], signatures: np.ndarray,
              top: int = 5) -> dict[str, Any] | None:
        """The recording among ``among`` (with their stacked ``signatures``) this clip is a copy of, if any
        (checked against the closest spectra only)."""
        if not among:
            return None
        closeness = signatures @ signature
        for j in np.argsort(-closeness)[:top]:
            i = among[j]
            if closeness[j] >= 0.85 and similarity(frames, self.fingerprints[i][0]) >= DUPLICATE_SIMILARITY:
                return self.recordings[i]
        return None


def cap_corpus(entries: list[dict[str, Any]], hours: float, clip_seconds: float = 30.0) -> list[dict[str, Any]]:
    """At most ``hours`` of corpus: every package keeps up to the same share (the largest cap that fits),
    files in path order, so no single game dominates the corpus."""
    by_pkg: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in entries:
        by_pkg[e["package"]].append(e)
    totals = {p: sum(min(e["seconds"], clip_seconds) for e in es) for p, es in by_pkg.items()}
    budget = hours * 3600
    cap = max(totals.values(), default=0.0)
    if sum(totals.values()) > budget:
        lo, hi = 0.0, cap
        for _ in range(50):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if sum(min(t, mid) for t in totals.values()) <= budget else (lo, mid)
        cap = lo
    kept = []
    for _, es in sorted(by_pkg.items()):
        used = 0.0
        for e in sorted(es, key=lambda e: e["path"]):
            if used + min(e["seconds"], clip_seconds) > cap + 1e-6:
                break
            used += min(e["seconds"], clip_seconds)
            kept.append(e)
    return kept


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def prepare_world(cache: str | Path, catalogue: dict[str, Any], corpus: list[dict[str, Any]], packages: dict[str, Any],
                  *, corpus_hours: float = 3.0, log: Callable[[str], None] = say) -> dict[str, Any]:
    """Write ``CACHE/world`` from ``CACHE/extracted`` (see the module docstring); returns the data card's summary."""
    cache = Path(cache)
    writer = WorldWriter(cache, log)
    if writer.out.exists():
        shutil.rmtree(writer.out)
    writer.out.mkdir(parents=True)
    concepts = catalogue["concepts"]
    for concept in concepts:
        writer.add_recordings(concept)
        writer.add_pictures(concept)
    log(f"concepts: {len(writer.recordings)} recordings, {len(writer.pictures)} pictures")
    writer.add_corpus(corpus, corpus_hours)
    log(f"corpus: {len(writer.corpus)} clips, {sum(r['seconds'] for r in writer.corpus) / 3600:.2f} h")

    fit = defaultdict(list)
    for p in writer.pictures:
        if p["split"] == "fit":
            fit[p["label"]].append(p["image"])
    val_sources = {c["name"]: choose_val_source(c) for c in concepts}
    by_name = {c["name"]: c for c in concepts}
    for r in writer.recordings:
        r["split"] = split_of(by_name[r["label"]], r["source"], val_sources[r["label"]])
        r["image"] = "|".join(fit[r["label"]][:MANIFEST_IMAGES])
        r["caption"] = concept_caption(by_name[r["label"]])
    writer.drop_held_out_twins()
    meta = ["package", "version", "licence", "kind"]
    _write_csv(writer.out / "manifest.csv", writer.recordings,
               ["audio", "image", "caption", "label", "split", "heard", "source", "label_from", *meta])
    _write_csv(writer.out / "pictures.csv", writer.pictures, ["image", "label", "captions", "split", *meta])
    _write_csv(writer.out / "corpus.csv", writer.corpus, ["audio", "package", "version", "licence", "path", "seconds"])
    return write_data_card(writer.out, concepts, val_sources, writer.recordings, writer.pictures, writer.corpus,
                           writer.skipped, packages, cache / "extracted")
