"""Vetting name-labelled recordings by listening models before they join the everyday catalogue."""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from wavbrivl.data import PairedRow
from wavbrivl.worlds.everyday.catalogue import with_vetted
from wavbrivl.worlds.everyday.dataset import choose_val_source, split_of
from wavbrivl.worlds.everyday.vetting import (LABEL_FROM_NAME, Candidate, accepted_recordings, source_margins,
                                              vet_candidates, vetted_document)

from .conftest import write_wav


def chirps(low: float, seconds: float = 1.5, sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Repeated short rising chirps from ``low`` Hz with a little noise: one kind of sound, a new take per seed."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(0.25 * sr)) / sr
    chirp = np.sin(2 * np.pi * low * (1 + rng.uniform(0.9, 1.1)) * (t + t**2)) * np.exp(-8 * t)
    wave = np.concatenate([chirp, np.zeros(int(0.1 * sr))] * int(seconds / 0.35))
    return (0.5 * wave + 0.01 * rng.standard_normal(wave.size)).astype(np.float32)


def test_source_margins_name_the_nearest_training_source():
    train = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0.9, 0.1]], dtype=float)
    out = source_margins(train, ["a", "a", "b", "b"], ["a:1", "a:2", "b:1", "b:2"],
                         np.array([[1, 0.05, 0], [1, 0.05, 0]]), ["a", "b"])
    assert out[0]["nearest_concept"] == "a" and out[0]["margin"] > 0
    assert out[1]["nearest_concept"] == "a" and out[1]["margin"] == -out[0]["margin"]  # named b, heard as a


def test_a_file_is_accepted_only_when_every_listener_hears_its_name(tiny_model, tmp_path):
    """Two kinds of sound, each from two training sources; a candidate named after the kind it is joins, one named
    after the other kind (a misleading file name, like a game's pig unit calls) is rejected with the reason."""
    rows = []
    for label, low in (("bird", 2400.0), ("cow", 150.0)):
        for source in (1, 2):
            for take in range(3):
                path = write_wav(tmp_path / f"{label}{source}{take}.wav", chirps(low, seed=10 * source + take))
                rows.append(PairedRow(path, [], label=label, split="train", meta={"source": f"{label}:{source}"}))
    rows.append(PairedRow(write_wav(tmp_path / "held.wav", chirps(150.0, seed=99)), [], label="cow", split="test",
                          meta={"source": "cow:held", "package": "held-data"}))
    world = SimpleNamespace(rows=rows, concept=lambda name: SimpleNamespace(heard=True))
    honest = Candidate(write_wav(tmp_path / "moo.wav", chirps(150.0, seed=7)), "game-data", "1", "GPL-2", "moo.wav", 1.5,
                       "abc", "cow", r"moo")
    misleading = Candidate(write_wav(tmp_path / "cow_ack.wav", chirps(2400.0, seed=8)), "game-data", "1", "GPL-2",
                           "cow_ack.wav", 1.5, "def", "cow", r"cow_")
    verdicts = vet_candidates(world, [honest, misleading], {"aisfx": tiny_model, "student": tiny_model}, margin=0.0)
    assert [v.accepted for v in verdicts] == [True, False]
    assert "bird" in verdicts[1].reason and verdicts[1].student["nearest_concept"] == "bird"
    assert verdicts[0].aisfx["margin"] > 0 > verdicts[1].aisfx["margin"]

    doc = vetted_document(verdicts, 0.0)
    assert [v["path"] for v in doc["accepted"]] == ["moo.wav"] and [v["path"] for v in doc["rejected"]] == ["cow_ack.wav"]
    extra = accepted_recordings(doc)
    assert extra == {"cow": [{"package": "game-data", "version": "1", "path": "moo.wav", "licence": "GPL-2",
                              "source": "game:named-files", "kind": "recording", "seconds": 1.5, "md5": "abc",
                              "label_from": LABEL_FROM_NAME, "split": "train"}]}


def test_vetted_files_train_only_and_never_move_the_validation_or_test_source():
    concept = {"name": "cow", "heard": True, "test_source": "s1", "audio": [
        {"source": s, "kind": "recording"} for s in ("s1", "s2", "s2", "s3", "s4", "s4", "s4")]}
    catalogue = {"concepts": [concept]}
    before = choose_val_source(concept)
    vetted = {"accepted": [{"concept": "cow", "package": "x-data", "version": "1", "path": f"cow{i}.wav", "licence": "GPL-2",
                            "seconds": 1.0, "md5": ""} for i in range(1)]}
    merged = with_vetted(catalogue, vetted)["concepts"][0]
    # counted, the one-file vetted source would become the second smallest and take over validation
    assert len(merged["audio"]) == 8 and choose_val_source(merged) == before == "s2"
    assert split_of(merged, "x:named-files", before) == "train"
    assert with_vetted(catalogue, None) is catalogue
