"""The everyday world's catalogue: which file of which Debian package is what, and where it lands on disk.

The catalogue (``catalogue.json`` beside this module) is committed data: per concept its name, aliases, its
``caption`` (how a person would describe hearing it: "a dog barking", "rain falling"; the training caption and
the bundle's label), group, whether it is heard in training, the independent source held out for testing, and every recording
and picture with package, version, path, independent source, licence and kind. ``corpus.json`` lists the
unlabelled sound-effect corpus, ``packages.json`` the packages (version, .deb size, attribution lines).

Catalogue path notation (one string per file, so a file is named the same way everywhere):

* ``usr/share/x/y.ogg``: a plain file inside the .deb;
* ``<container>!<member>``: a member of a zip/pk3/wz archive or of a Qt ``.rcc`` resource file;
  ``<...>/opensfx.cat!#NN`` is entry NN of OpenTTD's sound container;
* ``<sf2>#render:kind=K,bank=B,program=P,note=N,seconds=S,velocity=V``: a note rendered from a SoundFont;
* ``<font>#U+XXXX``: a code point rendered with a font (emoji and symbol glyphs).

:func:`local_path` maps such a path to the file the fetch step writes under ``CACHE/extracted``.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CONTAINER_SUFFIXES = (".zip", ".pk3", ".wz", ".rcc", ".cat")
RENDER_MARK = "#render:"
MD5_CHARS = 12  # files are checked against the first 12 hex digits of their md5 (enough to catch damage; half the size)
GLYPH_MARK = "#U+"


def load_json(name: str, path: str | Path | None = None) -> Any:
    """One of the committed data files (``catalogue.json``, ``corpus.json``, ``packages.json``), or ``path``."""
    return json.loads(Path(path or HERE / name).read_text())


def with_vetted(catalogue: dict[str, Any], vetted: dict[str, Any] | None) -> dict[str, Any]:
    """The catalogue with the corpus files that passed vetting (``vetted.json``, see :mod:`.vetting`) added to
    their concepts as training recordings."""
    from .vetting import accepted_recordings

    return _with_recordings(catalogue, accepted_recordings(vetted or {}))


def with_libraries(catalogue: dict[str, Any], libraries: dict[str, Any] | None) -> dict[str, Any]:
    """The catalogue with the recordings of curated sound libraries (``libraries.json``) added to their concepts
    as training recordings, one source per library: a library names its own sounds, so its names are labels,
    and its sources only ever train, which leaves the validation and test splits as they were."""
    extra: dict[str, list[dict[str, Any]]] = {}
    for lib in (libraries or {}).get("libraries", []):
        for concept, rows in lib["files"].items():
            extra.setdefault(concept, []).extend({
                "package": lib["package"], "version": lib["version"], "path": lib["prefix"] + name,
                "licence": lib["licence"], "attribution": lib["attribution"], "source": lib["source"],
                "kind": "recording", "seconds": seconds, "md5": md5,
                "label_from": libraries["label_from"], "split": "train"} for name, seconds, md5 in rows)
    known = {c["name"] for c in catalogue["concepts"] if c["heard"]}
    if unknown := sorted(set(extra) - known):
        raise ValueError(f"libraries.json names concepts that are not heard concepts of the catalogue: {unknown}")
    return _with_recordings(catalogue, extra)


def _with_recordings(catalogue: dict[str, Any], extra: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """The catalogue with ``extra`` (concept name -> audio entries) appended to its concepts' recordings; the
    catalogue itself when there is nothing to add."""
    if not extra:
        return catalogue
    concepts = [dict(c, audio=c["audio"] + extra.get(c["name"], [])) for c in catalogue["concepts"]]
    return dict(catalogue, concepts=concepts)


def load_corpus(path: str | Path | None = None) -> list[dict[str, Any]]:
    """The corpus entries (``package, version, path, licence, seconds, md5[, attribution]``) from ``corpus.json``,
    which stores them per package with a common path prefix to stay small."""
    packed = load_json("corpus.json", path)
    entries = []
    for pkg, info in packed["packages"].items():
        for row in info["files"]:
            entry = {"package": pkg, "version": info["version"], "path": info["prefix"] + row[0], "seconds": row[1],
                     "md5": row[2], "licence": row[3] if len(row) > 3 else info["licence"]}
            if len(row) > 4:
                entry["attribution"] = row[4]
            entries.append(entry)
    return entries


def md5_matches(expected: str, data_path: Path) -> bool:
    """Whether a file's md5 starts with the catalogue's (possibly shortened) digest."""
    import hashlib

    digest = hashlib.md5()
    with open(data_path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest().startswith(expected)


def concept_caption(concept: dict[str, Any]) -> str:
    """How a person would describe hearing the concept ("a dog barking"); its name for a catalogue without one."""
    return concept.get("caption") or concept["name"]


def slug(name: str) -> str:
    """A folder name for a concept: ``door knock`` → ``door-knock``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


@dataclass(frozen=True)
class Render:
    """A SoundFont note to render: ``kind`` is ``melodic`` (bank 0), ``drum`` (bank 128) or ``sfx`` (GM effects)."""

    soundfont: str
    kind: str
    bank: int
    program: int
    note: int
    seconds: float
    velocity: int = 100

    @property
    def file_name(self) -> str:
        return f"{self.kind}_{self.bank}_{self.program}_{self.note}_{self.seconds:g}_{self.velocity}.wav"


def parse_render(path: str) -> Render:
    """The render spec of a ``...sf2#render:k=v,...`` catalogue path."""
    soundfont, spec = path.split(RENDER_MARK, 1)
    fields = dict(part.split("=", 1) for part in spec.split(","))
    try:
        return Render(soundfont, fields["kind"], int(fields["bank"]), int(fields["program"]), int(fields["note"]),
                      float(fields["seconds"]), int(fields.get("velocity", 100)))
    except (KeyError, ValueError) as exc:
        raise ValueError(f"bad render path {path!r} ({exc})") from None


def glyph_text(path: str) -> str:
    """The text a ``<font>#U+XXXX[-U+YYYY]`` path renders (code points joined by ``-``)."""
    points = path.split("#", 1)[1]
    return "".join(chr(int(p.removeprefix("U+"), 16)) for p in points.split("-"))


def split_member(path: str) -> tuple[str, str] | None:
    """``(container, member)`` for an archive-member path, else None."""
    if "!" not in path:
        return None
    container, member = path.split("!", 1)
    return (container, member) if container.endswith(CONTAINER_SUFFIXES) else None


def member_file(member: str) -> str:
    """Where a container member is written inside ``<container>.d/``: OpenTTD ``#NN`` entries become ``NN.wav``."""
    return f"{int(member[1:]):02d}.wav" if member.startswith("#") else member


def local_path(root: str | Path, package: str, path: str) -> Path:
    """The extracted (or rendered) file of a catalogue path, under the extraction root ``root``."""
    base = Path(root) / package
    if RENDER_MARK in path:
        render = parse_render(path)
        return base / (render.soundfont + ".renders") / render.file_name
    if GLYPH_MARK in path:
        font, points = path.split("#", 1)
        return base / (font + ".glyphs") / f"{points}.png"
    member = split_member(path)
    if member:
        return base / (member[0] + ".d") / member_file(member[1])
    return base / path


def copyright_path(package: str) -> str:
    return f"usr/share/doc/{package}/copyright"


@dataclass
class PackageSpec:
    """What the fetch step needs from one package: paths to extract, containers to open, things to render."""

    package: str
    version: str
    files: set[str]  # plain paths, also the SoundFonts and fonts that renders need
    members: dict[str, set[str]]  # container path -> member names
    renders: set[str]  # full catalogue paths of SoundFont renders
    glyphs: set[str]  # full catalogue paths of glyph renders
    md5: dict[str, str]  # catalogue path -> expected md5 where known

    def all_paths(self) -> list[str]:
        """Every catalogue path this package provides (for checking what was extracted)."""
        out = set(self.files - {p.split("#", 1)[0] for p in self.renders | self.glyphs})
        out |= {f"{c}!{m}" for c, ms in self.members.items() for m in ms}
        return sorted(out | self.renders | self.glyphs)

    def key(self) -> dict[str, Any]:
        """Everything that decides the extracted result (its hash marks a finished extraction)."""
        return {"version": self.version, "files": sorted(self.files), "renders": sorted(self.renders),
                "glyphs": sorted(self.glyphs), "members": {c: sorted(m) for c, m in sorted(self.members.items())}}


def file_entries(catalogue: dict[str, Any], corpus: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every recording, picture and corpus file of the catalogue, each a dict with package/version/path/md5."""
    entries = [f for c in catalogue["concepts"] for f in c["audio"] + c["pictures"]]
    return entries + list(corpus or [])


def package_specs(entries: list[dict[str, Any]]) -> dict[str, PackageSpec]:
    """Group file entries by package into :class:`PackageSpec` (one per package, sorted by name)."""
    specs: dict[str, PackageSpec] = {}
    for e in entries:
        pkg, path = e["package"], e["path"]
        spec = specs.setdefault(pkg, PackageSpec(pkg, e["version"], {copyright_path(pkg)}, {}, set(), set(), {}))
        if e.get("md5"):
            spec.md5[path] = e["md5"]
        if RENDER_MARK in path:
            spec.renders.add(path)
            spec.files.add(path.split(RENDER_MARK, 1)[0])
        elif GLYPH_MARK in path:
            spec.glyphs.add(path)
            spec.files.add(path.split("#", 1)[0])
        elif (member := split_member(path)) is not None:
            spec.members.setdefault(member[0], set()).add(member[1])
        else:
            spec.files.add(path)
    return dict(sorted(specs.items()))


def reduced(catalogue: dict[str, Any], corpus: list[dict[str, Any]], packages: dict[str, Any], *,
            max_deb_mb: float = 50.0, heard: int = 8, never_heard: int = 2,
            corpus_seconds: float = 600.0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A CI-sized subset: only packages whose .deb is at most ``max_deb_mb``; the first ``heard`` heard concepts
    that keep their test source, three sources and five pictures from those packages; ``never_heard`` never-heard
    concepts; about ``corpus_seconds`` of corpus from the same packages. Chosen from the data, so it follows catalogue changes."""
    small = {p for p, info in packages.items() if (info.get("deb_mb") or 1e9) <= max_deb_mb}
    chosen = []
    quota = {True: heard, False: never_heard}
    for concept in catalogue["concepts"]:
        audio = [a for a in concept["audio"] if a["package"] in small]
        pictures = [p for p in concept["pictures"] if p["package"] in small]
        sources = {a["source"] for a in audio}
        ok = len(pictures) >= 5 and (not concept["heard"] or (concept["test_source"] in sources and len(sources) >= 3))
        if ok and quota[concept["heard"]] > 0:
            quota[concept["heard"]] -= 1
            chosen.append(dict(concept, audio=audio, pictures=pictures))
    used = {f["package"] for c in chosen for f in c["audio"] + c["pictures"]}
    kept, total = [], 0.0
    for entry in corpus:  # only from packages the concepts need anyway
        if entry["package"] in used and total < corpus_seconds:
            kept.append(entry)
            total += min(entry.get("seconds", 0.0), 30.0)
    return dict(catalogue, concepts=chosen), kept
