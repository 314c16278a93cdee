"""The everyday world's data side: fetch (from fixture .debs) and prepare, through the command line, plus the
committed catalogue's invariants. Offline: nothing is downloaded."""
from __future__ import annotations

import csv
import json
import struct
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from tests.everyday_fixtures import build_world_fixture, fetch_args
from wavbrivl.cli import main
from wavbrivl.worlds.everyday import catalogue as cat
from wavbrivl.worlds.everyday.containers import extract_members
from wavbrivl.worlds.everyday.dataset import cap_corpus, choose_val_source, gallery_paths, picture_captions
from wavbrivl.worlds.everyday.sounds import SAMPLE_RATE, typing_sequences


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("everyday")
    fixture = build_world_fixture(tmp)
    cache = tmp / "cache"
    code = main(fetch_args(fixture, cache))
    return fixture, cache, code


def test_fetch_extracts_and_reports_failures(world, capsys) -> None:
    fixture, cache, code = world
    assert code == 1  # a required package failed (and one has no .deb): reported, not raised
    results = {r["package"]: r for r in json.loads((cache / "fetch.json").read_text())}
    assert results["sounds-a"]["status"] == results["sounds-b"]["status"] == "extracted"
    assert "broken-data" in results["broken-data"]["error"] and "dpkg-deb" in results["broken-data"]["error"]
    assert "ghost-data" in results["ghost-data"]["error"]
    root = cache / "extracted"
    assert (root / "sounds-a/usr/share/a/beep2.ogg").is_file()
    assert (root / "sounds-b/usr/share/b/data.zip.d/snd/beep3.wav").is_file()
    assert (root / "sounds-b/usr/share/doc/sounds-b/copyright").is_file()
    assert not (root / "sounds-b/usr/share/b/data.zip").exists()  # containers are removed once opened
    assert not (root / "sounds-b/usr/share/b/data.zip.d/snd/chirp3.wav").read_bytes() == b""


def test_refetch_skips_finished_packages(world, capsys) -> None:
    fixture, cache, _ = world
    capsys.readouterr()
    main(fetch_args(fixture, cache, "--no-prepare"))
    out = capsys.readouterr().out
    assert "sounds-a" in out and "up to date" in out.split("sounds-a", 1)[1].splitlines()[0]
    assert "up to date" in out.split("sounds-b", 1)[1].splitlines()[0]


def test_damaged_file_is_reported_and_left_out(tmp_path: Path) -> None:
    fixture = build_world_fixture(tmp_path, damaged_deb=False, ghost_package=False)
    data = json.loads(fixture.catalogue.read_text())
    data["concepts"][0]["audio"][1]["md5"] = "000000000000"  # beep2.ogg no longer matches
    fixture.catalogue.write_text(json.dumps(data))
    assert main(fetch_args(fixture, tmp_path / "cache", "--no-prepare")) == 1
    result = {r["package"]: r for r in json.loads((tmp_path / "cache/fetch.json").read_text())}["sounds-a"]
    assert result["damaged"] == ["usr/share/a/beep2.ogg"]
    assert not (tmp_path / "cache/extracted/sounds-a/usr/share/a/beep2.ogg").exists()


def test_audio_is_mono_44k_pcm16_and_trimmed(world) -> None:
    _, cache, _ = world
    out = cache / "world"
    rows = _rows(out / "manifest.csv")
    assert rows and {"audio", "image", "caption", "label", "split", "heard", "source", "package", "version", "licence",
                     "kind"} <= set(rows[0])
    for r in rows + _rows(out / "corpus.csv"):
        info = sf.info(out / r["audio"])
        assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
        assert info.duration <= 30.0
        wave, _ = sf.read(out / r["audio"])
        assert abs(wave[0]) > 0 or abs(wave[-1]) > 0  # the fixtures' leading silence is gone
    card = json.loads((out / "data_card.json").read_text())
    assert any("silent" in s["reason"] and s["path"].endswith("silent.wav") for s in card["skipped"])


def test_pictures_are_framed_128_on_white(world) -> None:
    _, cache, _ = world
    out = cache / "world"
    rows = _rows(out / "pictures.csv")
    assert len(rows) >= 8
    for r in rows:
        img = Image.open(out / r["image"])
        assert img.size == (128, 128) and img.mode == "RGB"
        arr = np.asarray(img)
        assert (arr[0, 0] >= 250).all() and (arr[-1, -1] >= 250).all()  # white margin
        assert (arr < 200).any()  # the drawing fills the frame after trimming
        assert r["label"] in r["captions"].split("|")
    per_concept = defaultdict(lambda: defaultdict(int))
    for r in rows:
        per_concept[r["label"]][r["split"]] += 1
    assert all(s["gallery"] >= 1 and s["fit"] >= 1 for s in per_concept.values())


def test_splits_follow_independent_sources(world) -> None:
    fixture, cache, _ = world
    rows = _rows(cache / "world/manifest.csv")
    splits = defaultdict(set)
    for r in rows:
        splits[r["label"], r["source"]].add(r["split"])
        assert r["image"], "every recording is paired with its concept's pictures"
    assert all(len(s) == 1 for s in splits.values()), splits
    tests = {c["name"]: c["test_source"] for c in fixture.data["concepts"]}
    for r in rows:
        if r["heard"] == "False":
            assert r["split"] == "test"
        elif r["source"] == tests[r["label"]]:
            assert r["split"] == "test"
    beep = {r["source"]: r["split"] for r in rows if r["label"] == "beep"}
    assert beep == {"a:beep1": "test", "a:beep2": "train", "b:beep3": "val", "b:beep4": "train"}  # 4 sources: one val
    assert "val" not in {r["split"] for r in rows if r["label"] == "chirp"}  # 3 sources: none
    assert {r["label"] for r in rows if r["heard"] == "False"} == {"hum"}


def test_corpus_drops_copies_of_concept_recordings(world) -> None:
    _, cache, _ = world
    corpus = _rows(cache / "world/corpus.csv")
    paths = {r["path"] for r in corpus}
    assert "usr/share/a/corpus/wind.wav" in paths and "usr/share/b/corpus/rain.ogg" in paths
    assert "usr/share/a/corpus/copy_of_beep.wav" not in paths  # md5 copy
    assert "usr/share/b/corpus/reencoded_beep.wav" not in paths  # fingerprint copy
    assert "usr/share/b/data.zip!snd/unused.wav" in paths
    reasons = {s["path"]: s["reason"] for s in json.loads((cache / "world/data_card.json").read_text())["skipped"]}
    assert "fingerprint" in reasons["usr/share/b/corpus/reencoded_beep.wav"]


def test_data_card_lists_every_file_and_licences(world) -> None:
    _, cache, _ = world
    out = cache / "world"
    card = json.loads((out / "data_card.json").read_text())
    listed = {f["file"]: f for f in card["files"]}
    for name, column in (("manifest.csv", "audio"), ("pictures.csv", "image"), ("corpus.csv", "audio")):
        for r in _rows(out / name):
            entry = listed[r[column]]
            assert entry["package"] and entry["version"] and entry["licence"] and entry["split"]
    assert listed[next(r["audio"] for r in _rows(out / "corpus.csv") if r["path"].endswith("rain.ogg"))]["attribution"]
    assert card["never_heard"] == ["hum"]
    assert sorted(p.name for p in (out / "LICENSES").iterdir()) == ["sounds-a.copyright", "sounds-b.copyright"]
    concepts = {c["name"]: c for c in json.loads((out / "concepts.json").read_text())}
    assert concepts["beep"]["val_source"] == "b:beep3" and concepts["hum"]["heard"] is False
    text = (out / "DATA.md").read_text()
    assert "hum" in text and "sounds-b" in text and "CC0-1.0" in text


# ------------------------------------------------------------------------------------------- units
def test_catalogue_path_notation() -> None:
    root = Path("/x")
    assert cat.local_path(root, "p", "a/b.zip!c/d.ogg") == Path("/x/p/a/b.zip.d/c/d.ogg")
    assert cat.local_path(root, "p", "a/opensfx.cat!#7") == Path("/x/p/a/opensfx.cat.d/07.wav")
    assert cat.local_path(root, "p", "f/E.ttf#U+1F415") == Path("/x/p/f/E.ttf.glyphs/U+1F415.png")
    render = "s/F.sf2#render:kind=drum,bank=128,program=0,note=38,seconds=1.5,velocity=100"
    assert cat.local_path(root, "p", render) == Path("/x/p/s/F.sf2.renders/drum_128_0_38_1.5_100.wav")
    assert cat.glyph_text("f.ttf#U+1F415") == "\U0001F415"
    spec = cat.package_specs([{"package": "p", "version": "1", "path": render},
                              {"package": "p", "version": "1", "path": "a/b.zip!c"}])["p"]
    assert spec.files == {"s/F.sf2", "usr/share/doc/p/copyright"} and spec.members == {"a/b.zip": {"c"}}
    assert render in spec.all_paths() and "s/F.sf2" not in spec.all_paths()


def test_opensfx_cat_members(tmp_path: Path) -> None:
    entries = [(b"Cow. License: CC0.", b"RIFFcow"), (b"Horse", b"RIFFhorse")]
    table_size = 8 * len(entries)
    body, table, offset = b"", b"", table_size
    for name, wav in entries:
        blob = bytes([len(name) + 1]) + name + b"\0" + wav
        table += struct.pack("<II", offset | 0x80000000 if not table else offset, len(blob))
        body += blob
        offset += len(blob)
    cat_file = tmp_path / "opensfx.cat"
    cat_file.write_bytes(table + body)
    missing = extract_members(cat_file, {"#1", "#5"}, tmp_path / "out")
    assert missing == ["#5"] and (tmp_path / "out/01.wav").read_bytes() == b"RIFFhorse"
    assert json.loads((tmp_path / "out/index.json").read_text())["00.wav"].startswith("Cow")


def test_val_source_and_gallery_rules() -> None:
    concept = {"heard": True, "test_source": "t", "audio": [{"source": s, "kind": k} for s, k in
               [("t", "recording"), ("a", "recording"), ("a", "recording"), ("b", "recording"), ("b", "recording"),
                ("b", "recording"), ("c", "recording"), ("r", "soundfont-render")]]}
    assert choose_val_source(concept) == "a"  # non-render sources by size: c (1), a (2), b (3) -> second smallest
    paths = [f"x/{i}.png" for i in range(8)] + ["e/1F415.svg", "f.ttf#U+1F415"]
    gallery = gallery_paths(paths)
    assert 2 <= len(gallery) < len(paths)
    assert ("e/1F415.svg" in gallery) == ("f.ttf#U+1F415" in gallery)  # one emoji's styles stay together
    assert gallery == gallery_paths(list(reversed(paths)))
    assert gallery_paths(["only.png"]) == set()  # never all: a concept's only drawing stays for training
    assert len(gallery_paths(["one.png", "two.png"])) == 1  # at least one as soon as one can be spared


def test_captions_and_corpus_cap() -> None:
    concept = {"name": "dog", "aliases": ["dog", "puppy"]}
    assert picture_captions(concept, "A  dog.") == ["dog", "puppy", "A dog"]
    assert picture_captions(concept, "Cani e gatti") == ["dog", "puppy"]
    entries = [{"package": p, "path": f"{p}/{i}", "seconds": 40.0 if p == "big" else 10.0}
               for p in ("big", "small") for i in range(100)]
    kept = cap_corpus(entries, hours=0.5)
    seconds = defaultdict(float)
    for e in kept:
        seconds[e["package"]] += min(e["seconds"], 30)
    assert sum(seconds.values()) <= 1800 and seconds["big"] == pytest.approx(seconds["small"], abs=30)


def test_typing_sequences_are_deterministic() -> None:
    rng = np.random.default_rng(0)
    clips = {f"k/{k:02x}-{d}.wav": (0.3 * rng.standard_normal(2000)).astype(np.float32) for k in range(5) for d in (0, 1)}
    a, b = typing_sequences(clips, count=3, seconds=2.0, seed=1), typing_sequences(clips, count=3, seconds=2.0, seed=1)
    assert len(a) == 3 and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(1.5 * SAMPLE_RATE < x.size <= 2.0 * SAMPLE_RATE and np.abs(x).max() <= 1.0 for x in a)


def test_committed_catalogue() -> None:
    data = cat.load_json("catalogue.json")
    concepts = data["concepts"]
    heard = [c for c in concepts if c["heard"]]
    assert len(heard) == 77 and len(concepts) - len(heard) == 16
    owners = defaultdict(set)
    for c in concepts:
        sources = {a["source"] for a in c["audio"]}
        if c["heard"]:
            assert c["test_source"] in sources and len(sources) >= 3, c["name"]
        for f in c["audio"] + c["pictures"]:
            owners[f["package"], f["path"]].add(c["name"])
            assert f["licence"] and f["version"]
    assert all(len(o) == 1 for o in owners.values())  # a file belongs to one concept
    corpus = cat.load_corpus()
    assert len(corpus) > 5000 and not {(e["package"], e["path"]) for e in corpus} & set(owners)
    size = sum((cat.HERE / n).stat().st_size for n in ("catalogue.json", "corpus.json", "packages.json"))
    assert size < 1.5e6
