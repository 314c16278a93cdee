"""Curated sound libraries (``libraries.json``): their recordings join their concepts as training-only sources
through the same fetch and prepare as the catalogue's, and a copy of a held-out take never trains."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.everyday_fixtures import build_world_fixture, fetch_args
from wavbrivl.cli import main
from wavbrivl.worlds.everyday.catalogue import HERE, load_json, with_libraries

LABEL_FROM = "the library's own name"


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _library(files: dict[str, list]) -> dict:
    return {"format": 1, "label_from": LABEL_FROM, "libraries": [{
        "package": "sounds-a", "version": "1.0-1", "licence": "CC0-1.0", "attribution": "A. Library",
        "source": "a:library", "prefix": "usr/share/a/corpus/", "files": files}]}


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory):
    """The fixture world prepared without and with a library that holds a new buzz and a copy of beep's test take."""
    tmp = tmp_path_factory.mktemp("libraries")
    fixture = build_world_fixture(tmp, damaged_deb=False, ghost_package=False)
    library = tmp / "libraries.json"
    library.write_text(json.dumps(_library({"buzz": [["wind.wav", 2.0, ""]], "beep": [["copy_of_beep.wav", 0.65, ""]]})))
    plain, added = tmp / "plain", tmp / "added"
    # The fixture catalogues a package with no .deb, so both runs report one failure and prepare the rest.
    assert main(fetch_args(fixture, plain)) == main(fetch_args(fixture, added, "--libraries", str(library))) == 1
    return plain / "world", added / "world"


def test_a_library_recording_trains_its_concept_and_says_where_its_label_came_from(worlds) -> None:
    _, added = worlds
    rows = [r for r in _rows(added / "manifest.csv") if r["source"] == "a:library"]
    assert [(r["label"], r["split"], r["label_from"], r["licence"]) for r in rows] == [
        ("buzz", "train", LABEL_FROM, "CC0-1.0")]
    card = json.loads((added / "data_card.json").read_text())
    assert "A. Library" in json.dumps(card)


def test_a_library_copy_of_a_held_out_take_is_dropped_and_reported(worlds) -> None:
    _, added = worlds
    assert not [r for r in _rows(added / "manifest.csv") if r["label"] == "beep" and r["source"] == "a:library"]
    reasons = {s["path"]: s["reason"] for s in json.loads((added / "data_card.json").read_text())["skipped"]}
    reason = reasons["usr/share/a/corpus/copy_of_beep.wav"]
    assert "test recording" in reason and "a:beep1" in reason and "leak" in reason


def test_libraries_leave_the_validation_and_test_splits_as_they_were(worlds) -> None:
    plain, added = worlds

    def held_out(world: Path) -> list[tuple[str, str, str]]:
        return sorted((r["label"], r["source"], r["split"]) for r in _rows(world / "manifest.csv") if r["split"] != "train")

    assert held_out(plain) == held_out(added)
    assert len(_rows(added / "manifest.csv")) == len(_rows(plain / "manifest.csv")) + 1


def test_a_library_naming_no_heard_concept_is_refused() -> None:
    catalogue = {"concepts": [{"name": "beep", "heard": True, "audio": []}, {"name": "hum", "heard": False, "audio": []}]}
    with pytest.raises(ValueError, match="hum"):
        with_libraries(catalogue, _library({"hum": [["x.wav", 1.0, ""]]}))
    assert with_libraries(catalogue, None) is catalogue


def test_the_committed_libraries_name_heard_concepts_and_train_only() -> None:
    catalogue = load_json("catalogue.json")
    merged = with_libraries(catalogue, load_json("libraries.json", HERE / "libraries.json"))
    before = {c["name"]: c for c in catalogue["concepts"]}
    for concept in merged["concepts"]:
        added = concept["audio"][len(before[concept["name"]]["audio"]):]
        assert all(a["split"] == "train" and a["source"] not in {concept["test_source"]} for a in added)
        assert all(a["licence"] == "CC-BY-SA-3.0" and a["md5"] for a in added)
    assert sum(len(c["audio"]) for c in merged["concepts"]) - sum(len(c["audio"]) for c in catalogue["concepts"]) == 35


def test_the_sources_benchmark_takes_an_added_source_out_of_training_only(worlds, tmp_path: Path) -> None:
    """``benchmarks/sources.py --added-source``'s control arm: the world less that source's training rows."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("sources_benchmark", Path(__file__).parent.parent / "benchmarks" / "sources.py")
    sources = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sources)
    _, added = worlds
    path, removed = sources.without_source_manifest(added, "a:library", tmp_path)
    assert removed == {"buzz": 1}
    kept = _rows(path)
    assert len(kept) == len(_rows(added / "manifest.csv")) - 1 and not [r for r in kept if r["source"] == "a:library"]
    assert all(Path(r["audio"]).is_file() for r in kept)
    with pytest.raises(SystemExit, match="no training rows"):
        sources.without_source_manifest(added, "nobody:library", tmp_path)


def test_the_committed_library_joins_the_world_only_when_asked_for() -> None:
    """Scratch's library measured no gain (docs/EXPERIMENTS.md), so a default prepare rebuilds the committed bundle's
    world without it; ``--libraries FILE`` adds it."""
    import argparse

    from wavbrivl.worlds.everyday.cli import select

    def recordings(libraries: str | None) -> int:
        args = argparse.Namespace(catalogue=None, corpus=None, packages=None, vetted=None, reduced=False, libraries=libraries)
        catalogue, _, _ = select(args)
        return sum(len(c["audio"]) for c in catalogue["concepts"])

    assert recordings(str(HERE / "libraries.json")) == recordings(None) + 35
    with pytest.raises(FileNotFoundError, match="no-such-libraries.json"):
        recordings("no-such-libraries.json")
