"""Tiny fake Debian packages and a matching catalogue for the everyday world's fetch/prepare tests.

Everything is generated: a few WAV/OGG recordings, a PNG and SVG drawing per concept, a zip archive with a
member, copyright files, built into .debs with ``dpkg-deb --build``. :func:`build_world_fixture` returns the
folders and file paths to pass to ``wavbrivl world everyday fetch --debs ... --catalogue ...``; a later test of
the reduced end-to-end build can reuse it.
"""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from PIL import Image, ImageDraw

SR = 22050
GLYPH_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")  # a glyph entry is added when it exists


def tone(freq: float, seconds: float = 0.6, sr: int = SR, seed: int = 0, lead: float = 0.05) -> np.ndarray:
    """A decaying upward sweep (so its fingerprint has temporal detail) with a little noise, after ``lead`` s of
    digital silence (to be trimmed)."""
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    phase = 2 * np.pi * freq * (t + t ** 2 / seconds)  # freq -> 3 freq over the clip
    wave = 0.5 * np.sin(phase) * np.exp(-2 * t) + 0.02 * rng.standard_normal(t.size)
    return np.concatenate([np.zeros(int(lead * sr)), wave]).astype(np.float32)


def resampled(wave: np.ndarray, sr: int) -> np.ndarray:
    """The same take at another sample rate (linear interpolation: a re-encoded copy)."""
    t = np.arange(int(wave.size * sr / SR)) / sr
    return np.interp(t, np.arange(wave.size) / SR, wave).astype(np.float32)


def audio_bytes(wave: np.ndarray, fmt: str, sr: int = SR, stereo: bool = False) -> bytes:
    buf = io.BytesIO()
    data = np.stack([wave, wave * 0.5], axis=1) if stereo else wave
    sf.write(buf, data, sr, format=fmt, subtype="VORBIS" if fmt == "OGG" else "PCM_16")
    return buf.getvalue()


def png_bytes(color: tuple[int, int, int], shape: str = "ellipse", size: tuple[int, int] = (90, 60)) -> bytes:
    """A shape on a transparent canvas with a wide empty border (the framing must trim it)."""
    img = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    box = (size[0] // 4, size[1] // 4, size[0] * 3 // 4, size[1] * 3 // 4)
    (draw.ellipse if shape == "ellipse" else draw.rectangle)(box, fill=color + (255,))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def svg_bytes(color: str) -> bytes:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="200" height="100" viewBox="0 0 200 100">'
            f'<rect x="20" y="20" width="60" height="40" fill="{color}"/></svg>').encode()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def build_deb(out_dir: Path, package: str, version: str, files: dict[str, bytes], work: Path) -> Path:
    """A .deb holding ``files`` (paths inside the package) plus its copyright file."""
    root = work / f"{package}-root"
    shutil.rmtree(root, ignore_errors=True)
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: all\nMaintainer: Test <t@example.org>\n"
        f"Description: fixture package {package}\n")
    files = {f"usr/share/doc/{package}/copyright": f"Format: test\nFiles: *\nLicense: CC0-1.0\n{package}\n".encode(), **files}
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    out_dir.mkdir(parents=True, exist_ok=True)
    deb = out_dir / f"{package}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "-Zgzip", "-z1", "--root-owner-group", "--build", str(root), str(deb)],
                   check=True, capture_output=True)
    return deb


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()[:12]


@dataclass
class WorldFixture:
    debs: Path
    catalogue: Path
    corpus: Path
    packages: Path
    data: dict[str, Any]  # the catalogue as written


def build_world_fixture(tmp: Path, *, damaged_deb: bool = True, ghost_package: bool = True) -> WorldFixture:
    """Two fixture packages with four concepts (``beep`` 4 sources, ``chirp`` 3, ``buzz`` 3, ``hum`` never heard);
    optionally a corrupt .deb (``broken-data``) and a catalogued package with no .deb (``ghost-data``)."""
    work, debs = tmp / "build", tmp / "debs"
    a, b = "sounds-a", "sounds-b"
    waves = {f: tone(f, seed=i) for i, f in enumerate((440, 520, 660, 880, 990, 300, 350, 1200, 1500, 700))}
    beep_copy = audio_bytes(waves[440], "WAV")
    pkg_a = {
        "usr/share/a/beep1.wav": beep_copy,
        "usr/share/a/beep2.ogg": audio_bytes(waves[520], "OGG", stereo=True),
        "usr/share/a/chirp1.wav": audio_bytes(waves[660], "WAV", sr=11025),
        "usr/share/a/chirp2.wav": audio_bytes(waves[880], "WAV"),
        "usr/share/a/buzz1.wav": audio_bytes(waves[300], "WAV"),
        "usr/share/a/silent.wav": audio_bytes(np.zeros(SR, np.float32), "WAV"),
        "usr/share/a/hum.ogg": audio_bytes(waves[990], "OGG"),
        "usr/share/a/pics/beep.png": png_bytes((200, 30, 30)),
        "usr/share/a/pics/beep2.png": png_bytes((30, 30, 200), "rect"),
        "usr/share/a/pics/chirp.svg": svg_bytes("green"),
        "usr/share/a/pics/buzz.png": png_bytes((90, 90, 0)),
        "usr/share/a/pics/hum.png": png_bytes((120, 0, 120), "rect"),
        "usr/share/a/corpus/wind.wav": audio_bytes(tone(150, 2.0, seed=7), "WAV"),
        "usr/share/a/corpus/copy_of_beep.wav": beep_copy,  # md5 copy of a concept recording
    }
    pkg_b = {
        "usr/share/b/data.zip": zip_bytes({"snd/beep3.wav": audio_bytes(waves[1200], "WAV"),
                                           "snd/chirp3.wav": audio_bytes(waves[1500], "WAV"),
                                           "snd/unused.wav": audio_bytes(tone(2000, seed=12), "WAV")}),
        "usr/share/b/beep4.wav": audio_bytes(waves[700], "WAV"),
        "usr/share/b/buzz2.wav": audio_bytes(waves[350], "WAV"),
        "usr/share/b/buzz3.wav": audio_bytes(tone(400, seed=11), "WAV"),
        "usr/share/b/pics/chirp.png": png_bytes((0, 160, 160)),
        "usr/share/b/pics/buzz.svg": svg_bytes("orange"),
        "usr/share/b/pics/hum.svg": svg_bytes("purple"),
        "usr/share/b/corpus/reencoded_beep.wav": audio_bytes(resampled(waves[520], 16000), "WAV", sr=16000),  # = beep2.ogg
        "usr/share/b/corpus/rain.ogg": audio_bytes(tone(90, 1.5, seed=9), "OGG"),
    }
    glyph = GLYPH_FONT.is_file()
    if glyph:
        pkg_b["usr/share/b/font.ttf"] = GLYPH_FONT.read_bytes()
    build_deb(debs, a, "1.0-1", pkg_a, work)
    build_deb(debs, b, "2.0-1", pkg_b, work)
    if damaged_deb:
        (debs / "broken-data_1.0_all.deb").write_bytes(b"!<arch>\nthis is not a debian package\n")

    def rec(pkg: str, path: str, source: str, data: bytes | None = None, kind: str = "recording", **extra: Any) -> dict:
        version = "1.0-1" if pkg == a else "2.0-1" if pkg == b else "1.0"
        entry = {"package": pkg, "version": version, "path": path, "source": source, "licence": "CC0-1.0", "kind": kind}
        return entry | ({"md5": _md5(data)} if data is not None else {}) | extra

    def pic(pkg: str, path: str, title: str) -> dict:
        version = "1.0-1" if pkg == a else "2.0-1" if pkg == b else "1.0"
        return {"package": pkg, "version": version, "path": path, "licence": "CC0-1.0", "kind": "drawing", "title": title}

    zip_members = zipfile.ZipFile(io.BytesIO(pkg_b["usr/share/b/data.zip"]))
    concepts = [
        {"name": "beep", "aliases": ["beep", "bleep"], "group": "household", "live": True, "heard": True,
         "test_source": "a:beep1", "doubts": "",
         "audio": [rec(a, "usr/share/a/beep1.wav", "a:beep1", pkg_a["usr/share/a/beep1.wav"]),
                   rec(a, "usr/share/a/beep2.ogg", "a:beep2", pkg_a["usr/share/a/beep2.ogg"]),
                   rec(b, "usr/share/b/data.zip!snd/beep3.wav", "b:beep3", zip_members.read("snd/beep3.wav")),
                   rec(b, "usr/share/b/beep4.wav", "b:beep4", pkg_b["usr/share/b/beep4.wav"]),
                   rec(a, "usr/share/a/silent.wav", "b:beep4")],  # silent: skipped and reported
         "pictures": [pic(a, "usr/share/a/pics/beep.png", "A beep."), pic(a, "usr/share/a/pics/beep2.png", "blue box")]
         + ([pic(b, "usr/share/b/font.ttf#U+2605", "star")] if glyph else [])},
        {"name": "chirp", "aliases": ["chirp"], "group": "animal", "live": False, "heard": True,
         "test_source": "b:chirp3", "doubts": "a made-up concept",
         "audio": [rec(a, "usr/share/a/chirp1.wav", "a:chirp1"), rec(a, "usr/share/a/chirp2.wav", "a:chirp2"),
                   rec(b, "usr/share/b/data.zip!snd/chirp3.wav", "b:chirp3")],
         "pictures": [pic(a, "usr/share/a/pics/chirp.svg", "chirp"), pic(b, "usr/share/b/pics/chirp.png", "a chirp")]},
        {"name": "buzz", "aliases": ["buzz"], "group": "animal", "live": False, "heard": True,
         "test_source": "b:buzz3", "doubts": "",
         "audio": [rec(a, "usr/share/a/buzz1.wav", "a:buzz1"), rec(b, "usr/share/b/buzz2.wav", "b:buzz2"),
                   rec(b, "usr/share/b/buzz3.wav", "b:buzz3"),
                   rec("broken-data", "usr/share/broken/buzz.wav", "broken:buzz")],
         "pictures": [pic(a, "usr/share/a/pics/buzz.png", "buzz"), pic(b, "usr/share/b/pics/buzz.svg", "buzz")]},
        {"name": "hum", "aliases": ["hum", "humming"], "group": "household", "live": False, "heard": False,
         "test_source": None, "doubts": "",
         "audio": [rec(a, "usr/share/a/hum.ogg", "a:hum", pkg_a["usr/share/a/hum.ogg"])],
         "pictures": [pic(a, "usr/share/a/pics/hum.png", "hum"), pic(b, "usr/share/b/pics/hum.svg", "hum")]},
    ]
    if ghost_package:
        concepts[3]["pictures"].append(pic("ghost-data", "usr/share/ghost/hum.png", "hum"))
    catalogue = {"format": 1, "concepts": concepts}
    corpus = {"columns": ["path", "seconds", "md5", "licence", "attribution"], "packages": {
        a: {"version": "1.0-1", "prefix": "usr/share/a/corpus/", "licence": "CC0-1.0",
            "files": [["wind.wav", 2.0, _md5(pkg_a["usr/share/a/corpus/wind.wav"])],
                      ["copy_of_beep.wav", 0.65, _md5(beep_copy)]]},
        b: {"version": "2.0-1", "prefix": "usr/share/b/", "licence": "CC-BY-3.0",
            "files": [["corpus/reencoded_beep.wav", 0.65, _md5(pkg_b["usr/share/b/corpus/reencoded_beep.wav"])],
                      ["corpus/rain.ogg", 1.5, _md5(pkg_b["usr/share/b/corpus/rain.ogg"]), "CC0-1.0", "Rain by R. Ecorder"],
                      ["data.zip!snd/unused.wav", 0.6, ""]]}}}
    packages = {p: {"version": v, "deb_mb": 0.1, "attribution": [f"{p} authors"], "licence_notes": []}
                for p, v in ((a, "1.0-1"), (b, "2.0-1"), ("broken-data", "1.0"), ("ghost-data", "1.0"))}
    paths = {}
    for name, data in (("catalogue", catalogue), ("corpus", corpus), ("packages", packages)):
        paths[name] = tmp / f"{name}.json"
        paths[name].write_text(json.dumps(data, indent=1))
    return WorldFixture(debs, paths["catalogue"], paths["corpus"], paths["packages"], catalogue)


def fetch_args(fixture: WorldFixture, cache: Path, *extra: str) -> list[str]:
    """Command-line arguments for ``wavbrivl world everyday fetch`` on the fixture, with no download."""
    return ["world", "everyday", "fetch", "--cache", str(cache), "--debs", str(fixture.debs), "--no-download",
            "--no-aisfx", "--catalogue", str(fixture.catalogue), "--corpus", str(fixture.corpus),
            "--packages", str(fixture.packages), *extra]
